"""The pages' languages: one catalogue, three languages, and the formats of each.

Every label, message and error a page shows comes from the catalogue — English (``en``),
Traditional Chinese (``zh-Hant``) and Simplified Chinese (``zh-Hans``). It is kept as one folder
per language with one file per area (``catalogue/<lang>/<area>.json``: ``shell``, ``track``,
``alerts``, …, so each feature edits its own file), flat keys, a key defined in one area only,
the same keys in every language (:func:`check_catalogues`; ``tests/gateway/test_ui.py`` fails on
a key missing in a language, a key defined twice, a ``{placeholder}`` that differs, or a key the
code uses that English lacks). The pages' script reads the same catalogue as one JSON document
per language (``/i18n/<lang>.json``, cached by the browser).

The language of a request (:func:`negotiate`): ``?lang=`` (the switch every page shows; it is
then remembered in the ``pl_lang`` cookie), else that cookie, else ``Accept-Language``
(``zh-TW``/``zh-HK``/``zh-MO``/``zh-Hant`` → Traditional, any other ``zh`` → Simplified), else
English.

Formats (:class:`Translator`): times are shown in the place's local time with its zone
(Hong Kong by default; the page's script adds the viewer's own time zone beside it when that
differs), numbers grouped by thousands, money as ``HK$1,240`` (two decimals only when there are
cents), durations in days and hours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from functools import cache
from pathlib import Path
from string import Formatter
from typing import Any

#: The pages' languages, in the order the switch shows them.
LANGUAGES: tuple[str, ...] = ("en", "zh-Hant", "zh-Hans")
#: Each language's name in itself (the switch's labels).
NATIVE_NAMES = {"en": "English", "zh-Hant": "繁體中文", "zh-Hans": "简体中文"}
#: The cookie that remembers the language chosen.
COOKIE = "pl_lang"
#: Folder of the catalogue: one folder per language, one JSON file per area.
CATALOGUE_DIR = Path(__file__).parent / "catalogue"

#: Hong Kong time (no daylight saving): the default place time of the pages.
HKT = timezone(timedelta(hours=8), "HKT")

_TRADITIONAL = ("zh-tw", "zh-hk", "zh-mo", "zh-hant")


class CatalogueError(Exception):
    """A catalogue file is missing, unreadable or disagrees with English."""


@cache
def catalogue(lang: str) -> dict[str, str]:
    """The strings of ``lang``, every area's file together (read once)."""
    if lang not in LANGUAGES:
        raise CatalogueError(f"no catalogue for {lang!r}")
    merged: dict[str, str] = {}
    for path in sorted((CATALOGUE_DIR / lang).glob("*.json")):
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise CatalogueError(f"{path}: {exc}") from exc
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise CatalogueError(f"{path}: must be an object of strings")
        twice = sorted(set(merged) & set(data))
        if twice:
            raise CatalogueError(f"{path}: {twice[0]!r} is defined in another area too")
        merged.update(data)
    if not merged:
        raise CatalogueError(f"{CATALOGUE_DIR / lang}: no catalogue files")
    return merged


@cache
def catalogue_json(lang: str) -> bytes:
    """The catalogue of ``lang`` as one JSON document (for the pages' script)."""
    return json.dumps(catalogue(lang), ensure_ascii=False, sort_keys=True,
                      separators=(",", ":")).encode()


def areas(lang: str) -> dict[str, frozenset[str]]:
    """Each area's keys in ``lang`` (for the checks)."""
    return {path.stem: frozenset(json.loads(path.read_text("utf-8")))
            for path in sorted((CATALOGUE_DIR / lang).glob("*.json"))}


def placeholders(text: str) -> frozenset[str]:
    """The ``{names}`` a catalogue string takes."""
    return frozenset(name for _, name, _, _ in Formatter().parse(text) if name)


def check_catalogues() -> list[str]:
    """Every problem of the catalogues against English (empty when they agree)."""
    english = catalogue("en")
    problems = []
    for lang in LANGUAGES[1:]:
        if areas(lang).keys() != areas("en").keys():
            problems.append(f"{lang}: areas {sorted(areas(lang))}, English {sorted(areas('en'))}")
        other = catalogue(lang)
        problems += [f"{lang}: missing {key!r}" for key in sorted(set(english) - set(other))]
        problems += [f"{lang}: unknown {key!r}" for key in sorted(set(other) - set(english))]
        problems += [f"{lang}: {key!r} takes {sorted(placeholders(other[key]))}, English "
                     f"{sorted(placeholders(text))}"
                     for key, text in english.items()
                     if key in other and placeholders(other[key]) != placeholders(text)]
    return problems


def negotiate(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """The language of a request from its ``?lang=``, cookie and ``Accept-Language``."""
    for chosen in (query, cookie):
        if chosen in LANGUAGES:
            return chosen
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((-quality, index, tag.strip().lower()))
    for quality, _, tag in sorted(ranked):
        if quality >= 0:
            continue
        if tag.startswith(_TRADITIONAL):
            return "zh-Hant"
        if tag == "zh" or tag.startswith("zh-"):
            return "zh-Hans"
        if tag == "en" or tag.startswith("en-") or tag == "*":
            return "en"
    return "en"


@dataclass(frozen=True)
class Translator:
    """The strings and formats of one language."""

    lang: str

    @property
    def strings(self) -> dict[str, str]:
        return catalogue(self.lang)

    def __call__(self, key: str, **params: Any) -> str:
        """The text of ``key`` with ``params`` filled in (English if a language lacks it; the
        key itself if English does, so a missing string shows rather than breaks a page)."""
        text = self.strings.get(key) or catalogue("en").get(key) or key
        return text.format_map(params) if params else text

    def has(self, key: str) -> bool:
        return key in catalogue("en")

    # -- formats ---------------------------------------------------------------------------------
    def number(self, value: float | int | Decimal, decimals: int = 0) -> str:
        """``1,240`` / ``12.5`` (grouped by thousands in all three languages)."""
        return f"{value:,.{decimals}f}"

    def money(self, amount: float | int | Decimal | str, currency: str = "HKD") -> str:
        """``HK$1,240`` (``HK$1,240.50`` with cents; other currencies by their code)."""
        value = Decimal(str(amount))
        cents = value != value.to_integral_value()
        text = f"{value:,.2f}" if cents else f"{value:,.0f}"
        symbol = self("money.symbol." + currency) if self.has("money.symbol." + currency) \
            else currency + " "
        return symbol + text

    def when(self, moment: int | float | str | None, tz: timezone = HKT) -> str:
        """A time in the place's zone: ``8 Nov 2026, 10:00 HKT`` / ``2026年11月8日 10:00 HKT``."""
        stamp = _datetime(moment)
        if stamp is None:
            return self("common.unknown")
        local = stamp.astimezone(tz)
        return self("fmt.datetime", day=local.day, month=self(f"month.{local.month}"),
                    year=local.year, time=local.strftime("%H:%M"),
                    zone=local.tzname() or "")

    def day(self, value: str) -> str:
        """A calendar day (``2026-11-06``) as ``6 Nov 2026`` / ``2026年11月6日``."""
        try:
            moment = datetime.strptime(value, "%Y-%m-%d")
        except (TypeError, ValueError):
            return value
        return self("fmt.date", day=moment.day, month=self(f"month.{moment.month}"),
                    year=moment.year)

    def duration(self, seconds: float | int) -> str:
        """``2 d 5 h`` / ``45 min``."""
        minutes = int(abs(seconds) // 60)
        days, rest = divmod(minutes, 1440)
        hours, minutes = divmod(rest, 60)
        if days:
            return self("fmt.days_hours", days=days, hours=hours)
        if hours:
            return self("fmt.hours_minutes", hours=hours, minutes=minutes)
        return self("fmt.minutes", minutes=minutes)


def _datetime(moment: int | float | str | None) -> datetime | None:
    if moment is None or moment == "":
        return None
    if isinstance(moment, int | float):
        return datetime.fromtimestamp(moment, UTC)
    try:
        parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(moment: int | float | str | None) -> str:
    """The ISO 8601 UTC form of a time (for ``<time datetime>``), empty if unknown."""
    stamp = _datetime(moment)
    return stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if stamp else ""
