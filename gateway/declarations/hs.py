"""Harmonized System knowledge (pure once loaded): which chapters, headings and subheadings of
HS 2022 exist, to flag a commodity code whose first digits name none.

The nomenclature is ``data/hs2022.csv`` (WCO HS 2022 via the ``datasets/harmonized-system``
Data Package, ODC-PDDL; ``data/SOURCES.md``). An HKHS (8 digits) or China (10 digits) code
extends a 6-digit subheading, so :meth:`Nomenclature.problem` checks the first 2, 4 and 6 digits
and says which level is unknown; national extensions beyond six digits are not in the list.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

#: The nomenclature shipped with the gateway.
DATA = Path(__file__).parent / "data" / "hs2022.csv"


@dataclass(frozen=True)
class Nomenclature:
    """HS codes by level: ``chapters`` (2 digits), ``headings`` (4), ``subheadings`` (6), each
    mapped to its English description."""

    chapters: dict[str, str]
    headings: dict[str, str]
    subheadings: dict[str, str]

    def problem(self, code: str) -> tuple[str, str] | None:
        """``(code, message)`` if ``code``'s chapter, heading or subheading is unknown."""
        if len(code) < 6 or not code[:6].isdigit():
            return ("invalid-hs-code", f"{code[:20]!r} does not start with a 6-digit HS "
                    "subheading")
        if code[:2] not in self.chapters:
            return ("unknown-hs-chapter", f"HS 2022 has no chapter {code[:2]}")
        if code[:4] not in self.headings:
            return ("unknown-hs-heading", f"HS 2022 has no heading {code[:2]}.{code[2:4]} "
                    f"(chapter {code[:2]}: {self.chapters[code[:2]]})")
        if code[:6] not in self.subheadings:
            return ("unknown-hs-subheading", f"HS 2022 heading {code[:4]} "
                    f"({self.headings[code[:4]]}) has no subheading {code[:4]}.{code[4:6]}")
        return None

    def describe(self, code: str) -> str | None:
        """The most precise description known for ``code``'s first 6, 4 or 2 digits."""
        return (self.subheadings.get(code[:6]) or self.headings.get(code[:4])
                or self.chapters.get(code[:2]))

    def chapter(self, code: str) -> int | None:
        """The chapter number of ``code`` (1..99), if its first two characters are digits."""
        return int(code[:2]) if code[:2].isdigit() else None


def parse(text: str) -> Nomenclature:
    """A nomenclature from CSV text with the columns ``hscode,level,description``."""
    levels: dict[str, dict[str, str]] = {"2": {}, "4": {}, "6": {}}
    for row in csv.DictReader(text.splitlines()):
        table = levels.get(row["level"])
        if table is not None and len(row["hscode"]) == int(row["level"]):
            table[row["hscode"]] = row["description"]
    return Nomenclature(levels["2"], levels["4"], levels["6"])


@functools.cache
def shipped() -> Nomenclature:
    """The nomenclature of ``data/hs2022.csv`` (read once)."""
    return parse(DATA.read_text(encoding="utf-8"))
