"""The feed formats the gateway reads, and detecting which one a file is.

Each name maps to its adapter module (see :mod:`gateway.feeds.model` for what a module has).
Detection asks each adapter's ``sniff`` in :data:`DETECTION_ORDER` (most specific first).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Protocol, cast

from gateway.feeds.model import ParseResult, not_this_format

#: Format name → adapter module.
FORMATS: dict[str, str] = {
    "edifact": "gateway.feeds.edifact",
    "ais": "gateway.feeds.ais",
    "dcsa": "gateway.feeds.dcsa_tnt",
    "dcsa-reefer": "gateway.feeds.dcsa_reefer",
    "cargo-imp": "gateway.feeds.cargo_imp",
    "one-record": "gateway.feeds.one_record",
    "gps": "gateway.feeds.gps",
    "customs": "gateway.feeds.customs",
    "epcis": "gateway.feeds.epcis",
}

#: The order ``detect`` tries the formats in: JSON formats with a distinctive member first,
#: the generic truck GPS JSON/CSV last.
DETECTION_ORDER: tuple[str, ...] = (
    "edifact", "ais", "cargo-imp", "epcis", "one-record", "dcsa-reefer", "dcsa", "customs",
    "gps",
)


class Adapter(Protocol):
    FORMAT: str

    def sniff(self, data: bytes) -> bool: ...

    def parse(self, data: bytes, *, received_at: int) -> ParseResult: ...


class UnknownFormat(ValueError):
    """A format name the gateway has no adapter for."""


def adapter(name: str) -> Adapter:
    """The adapter module of format ``name``; raises :class:`UnknownFormat`."""
    if name not in FORMATS:
        raise UnknownFormat(f"unknown feed format {name!r}; formats: {', '.join(FORMATS)}")
    module: ModuleType = importlib.import_module(FORMATS[name])
    return cast(Adapter, module)


def detect(data: bytes) -> str | None:
    """The first format (in :data:`DETECTION_ORDER`) whose adapter recognises ``data``."""
    for name in DETECTION_ORDER:
        if adapter(name).sniff(data):
            return name
    return None


def parse(data: bytes, *, received_at: int, name: str | None = None) -> ParseResult:
    """Parse ``data`` as format ``name`` (detected when None); never raises for bad data."""
    if name is None:
        name = detect(data)
        if name is None:
            return not_this_format("unknown", "not a feed format the gateway reads "
                                   f"({', '.join(FORMATS)})")
    return adapter(name).parse(data, received_at=received_at)
