"""Validation of the identifiers schools and LAs use: UPN, ULN, URN, NHS number, LA codes.

Rules are from the DfE UPN guide and the ULN/NHS specifications (see ../shared/DOMAIN.md). Each validator
returns the normalised value or raises ``ValueError`` with a message that says which rule was broken, so
pydantic reports it against the right field.
"""

from __future__ import annotations

import re

# Check letters and the final letter of a temporary UPN: no I, O or S.
UPN_ALPHABET = "ABCDEFGHJKLMNPQRTUVWXYZ"

# DfE LA numbers in force (153 authorities). Changes since the 2011 list python-stdnum carries:
# 2019 Dorset 838 and Bournemouth, Christchurch & Poole 839 replaced 835/836/837; 2021 Northamptonshire 928
# became North (940) and West (941) Northamptonshire; 2023 Cumbria 909 became Cumberland (942) and
# Westmorland and Furness (943). A deploying LA should refresh this from Get Information about Schools.
LA_CODES: frozenset[str] = frozenset(
    str(n)
    for n in (
        201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212, 213,
        301, 302, 303, 304, 305, 306, 307, 308, 309, 310, 311, 312, 313, 314, 315, 316, 317, 318, 319, 320,
        330, 331, 332, 333, 334, 335, 336, 340, 341, 342, 343, 344,
        350, 351, 352, 353, 354, 355, 356, 357, 358, 359, 370, 371, 372, 373,
        380, 381, 382, 383, 384, 390, 391, 392, 393, 394, 420,
        800, 801, 802, 803, 805, 806, 807, 808, 810, 811, 812, 813, 815, 816,
        821, 822, 823, 825, 826, 830, 831, 838, 839, 840, 841, 845, 846,
        850, 851, 852, 855, 856, 857, 860, 861, 865, 866, 867, 868, 869, 870,
        871, 872, 873, 874, 876, 877, 878, 879, 880, 881, 882, 883, 884, 885,
        886, 887, 888, 889, 890, 891, 892, 893, 894, 895, 896, 908, 916,
        919, 921, 925, 926, 929, 931, 933, 935, 936, 937, 938, 940, 941, 942, 943,
    )
)  # fmt: skip


def _ranges(*spans: tuple[int, int] | int) -> frozenset[str]:
    numbers: set[int] = set()
    for span in spans:
        low, high = span if isinstance(span, tuple) else (span, span)
        numbers.update(range(low, high + 1))
    return frozenset(f"{n:03d}" for n in numbers)


# What characters 2-4 of a UPN may be: the number of the LA that *issued* it, kept for life. The DfE's school
# census validation (rule 1530, "characters 2-4 not a recognised LA code") accepts any post-April-1999 LA code
# or a recognised pseudo-LA code: 001-005 and 701-708 (pseudo-LAs, e.g. service children's schools), Welsh
# LAs 660-681, and former English LAs: Bedfordshire 820 and Cheshire 875 (to 2009), Dorset, Poole and
# Bournemouth 835-837 (to 2019), Northamptonshire 928 (to 2021), Cumbria 909 (to 2023). The census list
# predates the 2019-2023 reorganisations, so the current LAs are added. Never the test of "the LA now".
UPN_LA_CODES: frozenset[str] = LA_CODES | _ranges(
    (1, 5), (201, 213), (301, 320), (330, 336), (340, 344), (350, 359), (370, 373), (380, 384), (390, 394),
    420, (660, 681), (701, 708), (800, 803), (805, 808), (810, 813), 815, 816, (820, 823), 825, 826, 830,
    831, (835, 837), 840, 841, 845, 846, (850, 852), (855, 857), 860, 861, (865, 896), 908, 909, 916, 919,
    921, 925, 926, 928, 929, 931, 933, (935, 938),
)  # fmt: skip

_UPN_SHAPE = re.compile(r"^[A-Z][0-9]{3}[0-9]{4}[0-9]{2}[0-9]{2}[0-9A-Z]$")
_ONS_LA = re.compile(r"^E0[6-9][0-9]{6}$|^E10[0-9]{6}$")
# Compiled once: ``re.fullmatch(pattern, ...)`` looks the pattern up in re's cache on every call (~0.3 us).
_POSTCODE = re.compile(r"[A-Z]{1,2}[0-9][0-9A-Z]?[0-9][A-Z]{2}")


def ascii_digits(value: str) -> bool:
    """Only the ASCII digits 0-9. ``str.isdigit`` also accepts other scripts' digits (Arabic-Indic,
    full-width, superscripts): an identifier written with them would be stored as a different string from the
    same identifier in ASCII, so one child or school would become two."""
    return value.isascii() and value.isdigit()


def upn_check_letter(body: str) -> str:
    """Check letter for characters 2-13 of a UPN (weights 2..13, a letter counts as its alphabet index)."""
    total = 0
    for weight, char in enumerate(body, start=2):
        value = UPN_ALPHABET.index(char) if char.isalpha() else int(char)
        total += weight * value
    return UPN_ALPHABET[total % 23]


# Tables for the check letter of a well-formed UPN (``_upn_is_valid``): nearly every inbound fact has a UPN,
# and the rule-by-rule checks of ``validate_upn`` cost ~1.9 us a UPN (the check letter 1.3), interpreter work
# per character; four dict look-ups cost a quarter of that. Each key is one well-formed part, so a look-up
# that misses means a rule is broken. Characters 2-4: the weighted sum (weights 2, 3, 4) of each LA number
# that issues UPNs.
_UPN_LA_SUM: dict[str, int] = {
    code: 2 * int(code[0]) + 3 * int(code[1]) + 4 * int(code[2]) for code in UPN_LA_CODES
}

# Four ASCII digits d0..d3 at weights w..w+3 add w * (d0 + d1 + d2 + d3) + (d1 + 2*d2 + 3*d3): both sums, for
# every string of four digits (10,000 keys, ~1.5 MB).
_FOUR_DIGITS: dict[str, tuple[int, int]] = {
    f"{a}{b}{c}{d}": (a + b + c + d, b + 2 * c + 3 * d)
    for a in range(10)
    for b in range(10)
    for c in range(10)
    for d in range(10)
}
# The last character: a digit, or a temporary UPN's letter (no I, O or S), by its value.
_UPN_LAST: dict[str, int] = {str(d): d for d in range(10)} | {c: i for i, c in enumerate(UPN_ALPHABET)}


def _upn_is_valid(upn: str) -> bool:
    """True when ``upn`` (stripped, upper case) passes every rule of ``validate_upn``: a check letter, 11
    ASCII digits whose first three are an LA that issues UPNs, a final digit or letter (not I, O or S), and
    the check letter matches. False says only that some rule failed; ``validate_upn`` then finds which."""
    if len(upn) != 13:
        return False
    la = _UPN_LA_SUM.get(upn[1:4])
    establishment = _FOUR_DIGITS.get(upn[4:8])  # weights 5-8
    serial = _FOUR_DIGITS.get(upn[8:12])  # weights 9-12 (year and serial)
    last = _UPN_LAST.get(upn[12])  # weight 13
    if la is None or establishment is None or serial is None or last is None:
        return False
    total = la + 5 * establishment[0] + establishment[1] + 9 * serial[0] + serial[1] + 13 * last
    return UPN_ALPHABET[total % 23] == upn[0]


def validate_upn(value: str) -> str:
    upn = value.strip().upper()
    if _upn_is_valid(upn):
        return upn
    # Rule by rule, so the message says which rule failed.
    if len(upn) != 13:
        raise ValueError("UPN must be 13 characters")
    if not _UPN_SHAPE.match(upn):
        raise ValueError("UPN must be a check letter, 11 digits and a final digit or letter (temporary UPN)")
    if upn[-1].isalpha() and upn[-1] not in UPN_ALPHABET:
        raise ValueError("a temporary UPN's final letter cannot be I, O or S")
    if upn[1:4] not in UPN_LA_CODES:
        # Messages never repeat the digits sent: they are a child's identifier.
        raise ValueError("UPN characters 2-4 are not the number of any LA that issues UPNs")
    if upn[0] != upn_check_letter(upn[1:]):
        raise ValueError("UPN check letter does not match the digits")
    return upn  # not reached: _upn_is_valid accepts every UPN that passes the rules above


def is_temporary_upn(upn: str) -> bool:
    return upn[-1].isalpha()


def validate_uln(value: str) -> str:
    uln = value.strip()
    if not (len(uln) == 10 and ascii_digits(uln)):
        raise ValueError("ULN must be 10 digits")
    if uln[0] == "0":
        raise ValueError("ULN cannot start with 0")
    total = sum(int(d) * w for d, w in zip(uln, range(10, 0, -1), strict=True))
    if total % 11 != 10:
        raise ValueError("ULN check digit is wrong")
    return uln


def validate_nhs_number(value: str) -> str:
    nhs = value.replace(" ", "").strip()
    if not (len(nhs) == 10 and ascii_digits(nhs)):
        raise ValueError("NHS number must be 10 digits")
    total = sum(int(d) * w for d, w in zip(nhs[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    if check == 10 or check != int(nhs[9]):
        raise ValueError("NHS number check digit is wrong")
    return nhs


def validate_urn(value: str) -> str:
    urn = value.strip()
    if not (ascii_digits(urn) and len(urn) == 6 and urn[0] in "1234"):
        raise ValueError("URN must be 6 digits starting 1-4 (a school's unique reference number)")
    return urn


def validate_la_code(value: str) -> str:
    code = value.strip()
    if not (len(code) == 3 and ascii_digits(code)):
        raise ValueError("LA code must be the 3-digit DfE LA number")
    if code not in LA_CODES:
        raise ValueError("LA code is not a current DfE LA number (a field that means the LA responsible now)")
    return code


# Welsh LAs' DfE numbers: a child can move to Wales. A destination is where the child went, not an LA of this
# system, so it may be Welsh (outside England the receiving LA is told by a person: see docs/TRACKING.md).
WELSH_LA_CODES: frozenset[str] = _ranges((660, 681))


def validate_destination_la_code(value: str) -> str:
    code = value.strip()
    if not (len(code) == 3 and ascii_digits(code)):
        raise ValueError("LA code must be the 3-digit DfE LA number")
    if code not in LA_CODES and code not in WELSH_LA_CODES:
        raise ValueError("LA code is not a current English or Welsh LA number")
    return code


def validate_ons_la_code(value: str) -> str:
    code = value.strip().upper()
    if not _ONS_LA.match(code):
        raise ValueError("ONS LA code must be 9 characters like E09000002")
    return code


def validate_postcode(value: str) -> str:
    """UK postcode, normalised to upper case with one space before the inward code."""
    compact = value.replace(" ", "").upper()
    if not _POSTCODE.fullmatch(compact):
        raise ValueError("postcode is not a UK postcode")
    return f"{compact[:-3]} {compact[-3:]}"
