"""Files schools already produce, turned into pupil-left-roll events: a CSV of leavers and the DfE Common
Transfer File (CTF) of a leaving pupil.

Each row or pupil becomes an event whose event_id is derived from the client and the pupil's leaving, so
uploading the same file again is idempotent. Problems are reported per row, naming the column.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from services.referral.models import ApiClient, Problem
from services.referral.service import derived_event_id
from services.referral.validation import UK

CSV_REQUIRED = ("UPN", "Surname", "Forename", "DOB", "LeavingDate", "DeletionGround")
CSV_OPTIONAL = ("Sex", "DestinationURN", "DestinationLA", "DestinationCountry")
MAX_ROWS = 5000
# What a file upload may be labelled. Windows labels a .csv file application/vnd.ms-excel when Excel is
# installed, so browsers and MIS uploads send that too.
CSV_MEDIA_TYPES = ("text/csv", "application/csv", "application/vnd.ms-excel")
CTF_MEDIA_TYPES = ("application/xml", "text/xml")
CTF_UNKNOWN = "XXXXXXX"  # destination not known: the file goes to the school2school lost pupil database
CTF_INDEPENDENT = "MMMMMMM"  # independent school or outside England and Wales
_GROUND = re.compile(r"^\(?([a-oA-O])\)?$")  # "i", "(i)", "I"
CTF_SEX = frozenset({"F", "M", "U"})  # the DfE Sex codeset (older files write the same codes in <Gender>)

# The event fields a row's problems name, as the file names them (the longest matching prefix wins), so a
# data officer sees the column or element to fix, not the event's internal path.
CSV_FIELDS: dict[str, str] = {
    "payload.child.upn": "UPN",
    "payload.child.forename": "Forename",
    "payload.child.surname": "Surname",
    "payload.child.date_of_birth": "DOB",
    "payload.child.sex": "Sex",
    "payload.child": "UPN",  # the identity rule: a UPN (or a name and date of birth)
    "payload.leaving_date": "LeavingDate",
    "payload.deletion_ground": "DeletionGround",
    "payload.destination.school_urn": "DestinationURN",
    "payload.destination.ctf_destination": "DestinationURN",
    "payload.destination.la_code": "DestinationLA",
    "payload.destination.country": "DestinationCountry",
    "payload.destination": "DestinationURN",
    "occurred_at": "LeavingDate",
}
CTF_FIELDS: dict[str, str] = {
    "payload.child.upn": "Pupil.UPN",
    "payload.child.uln": "Pupil.UniqueLearnerNumber",
    "payload.child.forename": "Pupil.Forename",
    "payload.child.surname": "Pupil.Surname",
    "payload.child.date_of_birth": "Pupil.DOB",
    "payload.child.sex": "Pupil.Sex",
    "payload.child": "Pupil.UPN",
    "payload.leaving_date": "SchoolHistory.School.LeavingDate",
    "payload.deletion_ground": "deletion_ground",
    "payload.destination": "Header.DestSchool",
    "occurred_at": "SchoolHistory.School.LeavingDate",
}


def in_file_terms(problems: list[Problem], fields: dict[str, str]) -> list[Problem]:
    """The problems of a row's event, each naming the column (CSV) or element (CTF) it came from."""
    named: list[Problem] = []
    for problem in problems:
        prefixes = [p for p in fields if problem.field == p or problem.field.startswith(p + ".")]
        field_name = fields[max(prefixes, key=len)] if prefixes else problem.field
        named.append(problem.model_copy(update={"field": field_name}))
    return named


class FileRejected(Exception):
    """The file as a whole cannot be read (not per row)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems[0].message)
        self.problems = problems


@dataclass
class Row:
    """One row or pupil of a file: the event built from it, or what stopped it being built."""

    index: int
    event: dict[str, Any] | None = None
    problems: list[Problem] = field(default_factory=list)


def parse_uk_date(text: str) -> date:
    """ISO dates, and the DD/MM/YYYY that MIS exports and spreadsheets write."""
    text = text.strip()
    for fmt in ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError("not a date (use YYYY-MM-DD or DD/MM/YYYY)")


def occurred_at_for(day: date) -> str:
    """Start of that UK school day: the moment a leaving took effect, never later than now."""
    start = datetime.combine(day, time(0, 0), tzinfo=UK).astimezone(UTC)
    return min(start, datetime.now(UTC)).isoformat()


def _destination(urn: str, la: str, country: str) -> dict[str, Any]:
    for code in (urn, la + urn if la else ""):
        if code in (CTF_UNKNOWN, CTF_INDEPENDENT):
            return {"known": False, "ctf_destination": code}
    detail = {k: v for k, v in (("school_urn", urn), ("la_code", la), ("country", country.upper())) if v}
    return {"known": bool(detail), **detail}


def _leaver_event(
    client: ApiClient, kind: str, kid: dict[str, Any], leaving: date, ground: str, destination: dict[str, Any]
) -> dict[str, Any]:
    identity = kid.get("upn") or f"{kid.get('surname', '')}|{kid.get('date_of_birth', '')}"
    return {
        "event_id": str(derived_event_id(client.id, f"{kind}\n{identity}\n{leaving.isoformat()}")),
        "event_type": "pupil-left-roll",
        "occurred_at": occurred_at_for(leaving),
        "source": {"system": kind, "la_code": client.la_code, "school_urn": client.school_urn},
        "payload": {
            "child": {k: v for k, v in kid.items() if v},
            "school_urn": client.school_urn,
            "deletion_ground": ground,
            "leaving_date": leaving.isoformat(),
            "destination": destination,
        },
    }


def leavers_from_csv(client: ApiClient, data: bytes) -> list[Row]:
    """Rows of a leavers CSV (header row first; column names as in CSV_REQUIRED / CSV_OPTIONAL)."""
    try:
        text = data.decode("utf-8-sig")  # Excel writes a byte-order mark
    except UnicodeDecodeError as exc:
        raise FileRejected([Problem(field="body", rule="encoding", message="the CSV must be UTF-8")]) from exc
    # newline="" hands line endings to the csv module, which knows quoted newlines and lone CRs.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        return _csv_rows(client, reader)
    except csv.Error as exc:  # the header row is read lazily too: one net catches both
        raise FileRejected(
            [Problem(field="body", rule="csv_format", message="the file is not valid CSV")]
        ) from exc


def _csv_rows(client: ApiClient, reader: csv.DictReader[str]) -> list[Row]:
    header = {name.strip().lower(): name for name in (reader.fieldnames or []) if name}
    missing = [c for c in CSV_REQUIRED if c.lower() not in header]
    if missing:
        raise FileRejected(
            [
                Problem(field=f"header.{c}", rule="column_required", message=f"column {c} is missing")
                for c in missing
            ]
        )
    rows: list[Row] = []
    for line, record in enumerate(reader, start=2):  # row 1 is the header, as a spreadsheet numbers it
        if len(rows) >= MAX_ROWS:
            raise FileRejected(
                [Problem(field="body", rule="too_many_rows", message=f"at most {MAX_ROWS} rows a file")]
            )

        def cell(name: str, record: dict[str, Any] = record) -> str:
            value = record.get(header.get(name.lower(), name))
            return value.strip() if isinstance(value, str) else ""

        if not any(cell(c) for c in CSV_REQUIRED + CSV_OPTIONAL):
            continue  # blank line at the end of an export
        rows.append(_csv_row(client, line, cell))
    return rows


def _csv_row(client: ApiClient, line: int, cell: Any) -> Row:
    row = Row(index=line)
    dates: dict[str, date] = {}
    for column in ("DOB", "LeavingDate"):
        try:
            dates[column] = parse_uk_date(cell(column))
        except ValueError as exc:
            row.problems.append(Problem(field=column, rule="date_format", message=str(exc)))
    ground = _GROUND.match(cell("DeletionGround"))
    if ground is None:
        row.problems.append(
            Problem(
                field="DeletionGround",
                rule="deletion_ground",
                message="the regulation 9(1) ground as one letter a-o",
            )
        )
    if row.problems or ground is None:
        return row
    kid = {
        "upn": cell("UPN").upper(),
        "forename": cell("Forename"),
        "surname": cell("Surname"),
        "date_of_birth": dates["DOB"].isoformat(),
        "sex": cell("Sex").upper()[:1],
    }
    destination = _destination(cell("DestinationURN"), cell("DestinationLA"), cell("DestinationCountry"))
    row.event = _leaver_event(
        client, "leavers-csv", kid, dates["LeavingDate"], ground.group(1).lower(), destination
    )
    return row


def _text(element: Element | None, path: str) -> str:
    found = element.find(path) if element is not None else None
    return (found.text or "").strip() if found is not None else ""


def parse_ctf(data: bytes) -> Element:
    """Parse CTF XML safely: no DTD, no entities, no external references (XML bombs and XXE are refused)."""
    try:
        root: Element = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise FileRejected(
            [
                Problem(
                    field="body",
                    rule="xml_forbidden",
                    message="DTDs, entities and external references are refused",
                )
            ]
        ) from exc
    except ParseError as exc:
        raise FileRejected(
            [Problem(field="body", rule="xml_format", message="the body is not well-formed XML")]
        ) from exc
    if root.tag != "CTfile":
        raise FileRejected(
            [Problem(field="CTfile", rule="ctf_format", message="the root element must be CTfile")]
        )
    return root


def ctf_source_problems(client: ApiClient, root: Element) -> list[Problem]:
    """The file must come from the client's own school (LEA, and URN or establishment number if given)."""
    source = root.find("Header/SourceSchool")
    problems: list[Problem] = []
    if _text(source, "LEA") != client.la_code:
        problems.append(
            Problem(field="Header.SourceSchool.LEA", rule="client_la", message="not this client's LA")
        )
    urn = _text(source, "URN")
    if client.school_urn is None or (urn and urn != client.school_urn):
        problems.append(
            Problem(field="Header.SourceSchool.URN", rule="client_school", message="not this school")
        )
    estab = _text(source, "Estab")
    if client.school_estab and estab != client.school_estab:
        problems.append(
            Problem(
                field="Header.SourceSchool.Estab", rule="client_school", message="not this school's number"
            )
        )
    return problems


def ctf_destination(root: Element) -> dict[str, Any]:
    """The leavers' destination from ``Header/DestSchool``; a file whose destination is its own source school
    is not a file of leavers (a results or return file, as the Multiplication Tables Check builds it) and is
    refused as a whole, whatever ground the upload names."""
    header = root.find("Header")
    source = header.find("SourceSchool") if header is not None else None
    dest = header.find("DestSchool") if header is not None else None
    dest_la, dest_estab, dest_urn = _text(dest, "LEA"), _text(dest, "Estab"), _text(dest, "URN")
    if dest_la + dest_estab in (CTF_UNKNOWN, CTF_INDEPENDENT):
        return {"known": False, "ctf_destination": dest_la + dest_estab}
    source_la, source_estab, source_urn = _text(source, "LEA"), _text(source, "Estab"), _text(source, "URN")
    same_number = bool(dest_la and dest_estab) and (dest_la, dest_estab) == (source_la, source_estab)
    if (same_number and dest_urn in ("", source_urn)) or (dest_urn and dest_urn == source_urn):
        raise FileRejected(
            [
                Problem(
                    field="Header.DestSchool",
                    rule="not_a_leavers_file",
                    message="the destination is the source school itself: this is not a file of leavers "
                    "(a leavers CTF names the new school, XXXXXXX if unknown or MMMMMMM if independent or "
                    "outside England and Wales)",
                )
            ]
        )
    destination = _destination(dest_urn, dest_la, "")
    if dest_estab and dest_la:
        destination["school_estab"] = dest_estab  # named by its DfE number when the file has no URN
    return destination


def _leaving_at_source(pupil: Element, source_estab: str) -> tuple[str, str]:
    """The pupil's LeavingDate and LeavingReason at the source school (SchoolHistory), or ("", "")."""
    leaving_text, reason = "", ""
    for school in pupil.findall("SchoolHistory/School"):
        if _text(school, "LeavingDate") and (not source_estab or _text(school, "Estab") == source_estab):
            leaving_text, reason = _text(school, "LeavingDate"), _text(school, "LeavingReason")
    return leaving_text, reason


def leavers_from_ctf(client: ApiClient, root: Element, deletion_ground: str | None) -> list[Row]:
    """One pupil-left-roll per Pupil of a CTF sent because pupils left the client's school."""
    destination = ctf_destination(root)
    source_estab = _text(root.find("Header"), "SourceSchool/Estab")
    pupils = root.findall("CTFpupilData/Pupil")
    if not pupils:
        raise FileRejected([Problem(field="CTFpupilData", rule="no_pupils", message="the file has no Pupil")])
    if len(pupils) > MAX_ROWS:
        raise FileRejected(
            [Problem(field="body", rule="too_many_rows", message=f"at most {MAX_ROWS} pupils")]
        )
    leavings = [_leaving_at_source(pupil, source_estab) for pupil in pupils]
    if not any(text for text, _ in leavings):
        raise FileRejected(
            [
                Problem(
                    field="SchoolHistory.School.LeavingDate",
                    rule="not_a_leavers_file",
                    message="no pupil in the file has a LeavingDate at the source school: this is not a file "
                    "of leavers",
                )
            ]
        )
    rows: list[Row] = []
    for index, (pupil, (leaving_text, reason)) in enumerate(zip(pupils, leavings, strict=True), start=1):
        row = Row(index=index)
        leaving: date | None = None
        if not leaving_text:  # never the file's DateTime: that is the day the file was made
            row.problems.append(
                Problem(
                    field="SchoolHistory.School.LeavingDate",
                    rule="required",
                    message="the pupil has no LeavingDate at the source school in SchoolHistory",
                )
            )
        else:
            try:
                leaving = parse_uk_date(leaving_text[:10])
            except ValueError as exc:
                row.problems.append(
                    Problem(field="SchoolHistory.School.LeavingDate", rule="date_format", message=str(exc))
                )
        ground = deletion_ground or (
            "a" if destination.get("school_urn") or destination.get("school_estab") else ""
        )
        if not ground and _GROUND.match(reason):
            ground = reason.strip("()").lower()
        if not ground:
            row.problems.append(
                Problem(
                    field="deletion_ground",
                    rule="required",
                    message="give the regulation 9(1) ground (query deletion_ground) for this leaver",
                )
            )
        if leaving is not None and not row.problems:
            # DfE's builders write <Sex>; older files <Gender>. A code outside the codeset is left out.
            sex = (_text(pupil, "Sex") or _text(pupil, "Gender")).upper()
            kid = {
                "upn": _text(pupil, "UPN").upper(),
                "uln": _text(pupil, "UniqueLearnerNumber"),
                "forename": _text(pupil, "Forename"),
                "surname": _text(pupil, "Surname"),
                "date_of_birth": _text(pupil, "DOB")[:10],
                "sex": sex if sex in CTF_SEX else "",
            }
            row.event = _leaver_event(client, "ctf", kid, leaving, ground, destination)
        rows.append(row)
    return rows
