"""An independent Common Transfer File builder, written from the DfE CTF specification's structure (see
/work/shared/DOMAIN.md), not from the importer's code: ``CTfile/Header`` (DocumentName, CTFversion, DateTime,
DocumentQualifier, SupplierID, SourceSchool LEA/Estab/URN/SchoolName/AcademicYear, DestSchool LEA/Estab
[/URN]) and ``CTFpupilData/Pupil`` (UPN, UniqueLearnerNumber, Surname, Forename, DOB, Sex, BasicDetails,
LookedAfter, SENhistory, Address, Contacts, SchoolHistory/School with LEA, Estab, EntryDate, LeavingDate,
LeavingReason). Elements a CTF carries that the importer does not read are written too, as a real file
would have them, so the test shows they do no harm.

It uses the standard library's ElementTree and writes what DfE's own builders write: ``<Sex>``, ISO dates,
and the destination codes XXXXXXX (unknown: the lost pupil database) and MMMMMMM (independent, or outside
England and Wales)."""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree import ElementTree as ET


@dataclass(frozen=True)
class School:
    lea: str
    estab: str
    name: str
    entry_date: str
    leaving_date: str | None = None
    leaving_reason: str | None = None


@dataclass(frozen=True)
class Pupil:
    upn: str
    surname: str
    forename: str
    dob: str
    sex: str | None = "F"
    uln: str | None = None
    gender: str | None = None  # what files before <Sex> wrote
    history: tuple[School, ...] = ()
    postcode: str = "BS1 5TR"


@dataclass(frozen=True)
class Ctf:
    source_lea: str
    source_estab: str
    source_urn: str | None
    dest_lea: str
    dest_estab: str
    dest_urn: str | None = None
    created: str = "2025-11-05T10:15:00"
    document_name: str = "Common Transfer File"
    qualifier: str = "full"
    pupils: list[Pupil] = field(default_factory=list)


def _add(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    child = ET.SubElement(parent, tag)
    if text is not None:
        child.text = text
    return child


def build_ctf(ctf: Ctf) -> bytes:
    root = ET.Element("CTfile")
    header = _add(root, "Header")
    _add(header, "DocumentName", ctf.document_name)
    _add(header, "CTFversion", "25.0")
    _add(header, "DateTime", ctf.created)
    _add(header, "DocumentQualifier", ctf.qualifier)
    _add(header, "SupplierID", "INDEPENDENT-TEST-BUILDER")
    source = _add(header, "SourceSchool")
    _add(source, "LEA", ctf.source_lea)
    _add(source, "Estab", ctf.source_estab)
    if ctf.source_urn:
        _add(source, "URN", ctf.source_urn)
    _add(source, "SchoolName", "Hill Primary School")
    _add(source, "AcademicYear", "2025")
    dest = _add(header, "DestSchool")
    _add(dest, "LEA", ctf.dest_lea)
    _add(dest, "Estab", ctf.dest_estab)
    if ctf.dest_urn:
        _add(dest, "URN", ctf.dest_urn)
    data = _add(root, "CTFpupilData")
    for p in ctf.pupils:
        pupil = _add(data, "Pupil")
        _add(pupil, "UPN", p.upn)
        if p.uln:
            _add(pupil, "UniqueLearnerNumber", p.uln)
        _add(pupil, "Surname", p.surname)
        _add(pupil, "Forename", p.forename)
        _add(pupil, "DOB", p.dob)
        if p.sex is not None:
            _add(pupil, "Sex", p.sex)
        if p.gender is not None:
            _add(pupil, "Gender", p.gender)
        basic = _add(pupil, "BasicDetails")
        _add(basic, "MiddleNames", "Jo")
        _add(basic, "Ethnicity", "WBRI")
        _add(basic, "FirstLanguage", "ENG")
        looked_after = _add(pupil, "LookedAfter")
        _add(looked_after, "InCare", "false")
        _add(_add(pupil, "SENhistory"), "SENprovision", "N")
        address = _add(pupil, "Address")
        _add(_add(address, "BS7666Address"), "Town", "Bristol")
        _add(address, "PostCode", p.postcode)
        contact = _add(_add(pupil, "Contacts"), "Contact")
        _add(contact, "Surname", p.surname)
        _add(contact, "Relationship", "PAR")
        history = _add(pupil, "SchoolHistory")
        for s in p.history:
            school = _add(history, "School")
            _add(school, "SchoolName", s.name)
            _add(school, "LEA", s.lea)
            _add(school, "Estab", s.estab)
            _add(school, "EntryDate", s.entry_date)
            if s.leaving_date:
                _add(school, "LeavingDate", s.leaving_date)
            if s.leaving_reason:
                _add(school, "LeavingReason", s.leaving_reason)
    ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")
