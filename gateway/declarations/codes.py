"""The identifiers of declarations (pure): commodity codes, the unified social credit code, the
official numbers the authorities give back, vehicle registrations.

Each ``check_*`` returns the problem as a :class:`CodeProblem` (or None), never raises, so a
draft can list every problem of a field; :func:`uscc_check_character` is the check algorithm of
GB 32100-2015.

The unified social credit code (统一社会信用代码, GB 32100-2015)
----------------------------------------------------------------
18 characters from ``0-9 A-H J-N P-R T U W-Y`` (no I, O, Z, S, V), each with its value 0–30 in
that order: registration authority (1), organisation type (1), administrative division (6
digits), organisation code (9), check character (1). With ``C_i`` the value of the i-th
character and the weight ``W_i = 3^(i-1) mod 31`` (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13,
8, 24, 10, 30, 28), the check value is ``C_18 = 31 - (sum of C_i * W_i for i = 1..17) mod 31``,
where 31 is written as 0. The standard's worked example: ``91350100M000100Y4?`` sums to 1640,
1640 mod 31 = 28, check value 3, so ``91350100M000100Y43`` is valid and ``…Y4Z`` is not.
(Described in https://www.yc00.com/web/1713075042a2177900.html, quoting GB 32100-2015 §5 and its
tables 1 and 2; the same weights and character set in https://codeshelper.com/article/12945.html.)

Official numbers
----------------
- China customs declaration (报关单号): 18 digits — the 4-digit customs office (关区代码), the
  4-digit year, the I/E flag (1 import, 0 export) and a 9-digit sequence (STANDARDS.md).
- Hong Kong TDEC reference and ROCARS CCRN: their layouts are not published in our sources; the
  gateway accepts what :data:`TDEC_REFERENCE` and :data:`CCRN` describe, which the SIMULATED
  authority (``devnet/authority.py``) issues: a TDEC reference is the form (``01``, ``1A``,
  ``1B``, ``02``, ``2A``, ``2B``), the date ``YYMMDD`` and a 7-digit sequence (15 characters);
  a CCRN is ``R``, ``I`` (import) or ``E`` (export), ``YYMMDD`` and a 6-digit sequence (14
  characters). A real connector replaces both patterns with the authority's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.land.model import CCRN as LAND_CCRN

#: The 31 characters of a unified social credit code, in value order (GB 32100-2015 table 1).
USCC_CHARACTERS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
#: Weights of positions 1..17: ``3^(i-1) mod 31`` (GB 32100-2015 table 2).
USCC_WEIGHTS: tuple[int, ...] = tuple(pow(3, i, 31) for i in range(17))

#: Form codes of Hong Kong import/export declarations (Cap. 60E).
TDEC_FORMS: tuple[str, ...] = ("1", "1A", "1B", "2", "2A", "2B")

_HKHS = re.compile(r"[0-9]{8}")
_CN_CODE = re.compile(r"[0-9]{10}")
_CN_NUMBER = re.compile(r"([0-9]{4})([0-9]{4})([01])([0-9]{9})")
#: TDEC reference as the SIMULATED authority issues it (module doc).
TDEC_REFERENCE = re.compile(r"(01|1A|1B|02|2A|2B)([0-9]{6})([0-9]{7})")
#: ROCARS CCRN as the SIMULATED authority issues it (module doc): the land leg's pattern, the
#: one definition (a truck job carries its CCRN; the land package sits below this one).
CCRN = LAND_CCRN
_VEHICLE = re.compile(r"[A-Z0-9]{1,8}")
_CUSTOMS_OFFICE = re.compile(r"[0-9]{4}")


@dataclass(frozen=True)
class CodeProblem:
    """Why a code is not acceptable: a stable ``code`` and a sentence."""

    code: str
    """Machine-readable: ``invalid-hkhs-code``, ``invalid-check-character``, ..."""
    message: str
    """For the user."""


def compact(text: str) -> str:
    """Upper case without spaces, dots, dashes and slashes (how codes are often written)."""
    return re.sub(r"[\s.\-/]", "", text).upper()


def check_hkhs(code: str) -> CodeProblem | None:
    """A Hong Kong HKHS commodity code: 8 digits."""
    if not _HKHS.fullmatch(code):
        return CodeProblem("invalid-hkhs-code",
                           f"{code[:20]!r} is not an HKHS code (8 digits, e.g. 85171300)")
    return None


def check_cn_code(code: str) -> CodeProblem | None:
    """A China customs commodity code (CodeTS): 10 digits."""
    if not _CN_CODE.fullmatch(code):
        return CodeProblem("invalid-cn-code",
                           f"{code[:20]!r} is not a China commodity code (10 digits, "
                           "e.g. 8517130000)")
    return None


def uscc_check_character(first17: str) -> str:
    """The check character of the first 17 characters of a unified social credit code."""
    total = sum(USCC_CHARACTERS.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_CHARACTERS[(31 - total % 31) % 31]


def check_uscc(code: str) -> CodeProblem | None:
    """A unified social credit code (GB 32100-2015): shape, then its check character."""
    if len(code) != 18:
        return CodeProblem("invalid-uscc", f"a unified social credit code has 18 characters, "
                           f"not {len(code)}")
    bad = sorted({c for c in code if c not in USCC_CHARACTERS})
    if bad:
        return CodeProblem("invalid-uscc", f"{''.join(bad)!r} never occur in a unified social "
                           "credit code (0-9 and A-Y without I, O, S, V, Z)")
    if not code[2:8].isdigit():
        return CodeProblem("invalid-uscc", "characters 3 to 8 (the administrative division) "
                           "are digits")
    expected = uscc_check_character(code[:17])
    if code[17] != expected:
        return CodeProblem("invalid-check-character",
                           f"the check character of {code[:17]} is {expected}, not {code[17]}")
    return None


def check_cn_declaration_number(number: str) -> CodeProblem | None:
    """A China customs declaration number: office (4) + year (4) + I/E (1) + sequence (9)."""
    found = _CN_NUMBER.fullmatch(number)
    if found is None:
        return CodeProblem("invalid-declaration-number",
                           f"{number[:24]!r} is not a China declaration number (18 digits: "
                           "customs office, year, 1 import / 0 export, 9-digit sequence)")
    if not 2000 <= int(found.group(2)) <= 2099:
        return CodeProblem("invalid-declaration-number",
                           f"digits 5-8 are the year, not {found.group(2)}")
    return None


def check_tdec_reference(reference: str) -> CodeProblem | None:
    """A TDEC reference as issued (module doc)."""
    if TDEC_REFERENCE.fullmatch(reference) is None:
        return CodeProblem("invalid-tdec-reference",
                           f"{reference[:24]!r} is not a TDEC reference (form, YYMMDD, 7 digits)")
    return None


def check_ccrn(ccrn: str) -> CodeProblem | None:
    """A ROCARS CCRN as issued (module doc)."""
    if CCRN.fullmatch(ccrn) is None:
        return CodeProblem("invalid-ccrn",
                           f"{ccrn[:24]!r} is not a CCRN (R, I or E, YYMMDD, 6 digits)")
    return None


def check_vehicle(registration: str) -> CodeProblem | None:
    """A vehicle registration mark as ROCARS binds it: 1 to 8 letters and digits."""
    if _VEHICLE.fullmatch(registration) is None:
        return CodeProblem("invalid-vehicle-registration",
                           f"{registration[:20]!r} is not a vehicle registration mark (1 to 8 "
                           "letters and digits)")
    return None


def check_customs_office(code: str) -> CodeProblem | None:
    """A China customs office code (关区代码): 4 digits."""
    if _CUSTOMS_OFFICE.fullmatch(code) is None:
        return CodeProblem("invalid-customs-office",
                           f"{code[:12]!r} is not a customs office code (4 digits, e.g. 5316)")
    return None
