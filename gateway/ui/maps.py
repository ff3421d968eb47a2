"""The pages' map (pure): a ``<div class=map>`` whose layers travel as data, drawn by Leaflet.

:func:`map_html` writes what a page shows where something moves or stands: a **vessel** (its
latest AIS position with speed, course, navigation status and time, and its track as a line), a
**port of call** (marker and name), **places** (a terminal, a warehouse: marker and label) and
**trucks** (position, speed, time). The layers go into the ``data-map`` attribute as JSON
(escaped like every value of a page), each with its label already translated, so the script
(``static/js/map.js``) only draws: Natural Earth land from the vendored world-atlas TopoJSON
(:data:`LAND`, no tile server) as a GeoJSON layer, the layers over it, the view fitted to them.

Every map also carries a **text** saying what it shows, in words (:func:`describe`): without
script it is all the reader gets; with script it stays as the map's visually-hidden description
(``aria-describedby``), beside the map's ``aria-label``; Leaflet's keyboard control pans and
zooms the focused map. A page with a map passes :data:`ASSETS` to
:func:`gateway.ui.shell.render` (``assets=maps.ASSETS``), so Leaflet is loaded only there.

Using it on a page (the container and vessel views do; the shipment page does the same)::

    from gateway.ui import maps
    body = maps.map_html(t, title=t("map.of_vessel", vessel=name),
                         vessel=maps.Vessel.from_view(view["vessel"]),
                         port=maps.Place("port", name, lat, lon, code="HKHKG"))
    return render(request, page=..., title=..., body=body, assets=maps.ASSETS)

Positions are WGS84 decimal degrees; a layer without a usable position is left out (and so is
the map, for :func:`map_html` with nothing to draw, which says so in a short text instead).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.ui.i18n import Translator, iso
from gateway.ui.shell import e

#: Leaflet's stylesheet and script and the TopoJSON client (vendored from npm; see
#: static/vendor/SOURCES.md), for :func:`gateway.ui.shell.render`'s ``assets``.
ASSETS: tuple[str, ...] = (
    "/static/vendor/leaflet/leaflet.css",
    "/static/vendor/leaflet/leaflet.js",
    "/static/vendor/topojson-client/topojson-client.min.js",
)
#: Natural Earth 1:10m land (world-atlas ``land-10m.json``; a gzip copy is served to browsers
#: that accept it, and the browser keeps it by its ETag).
LAND = "/static/vendor/world-atlas/land-10m.json"
#: The most a map zooms in when fitting its layers (a single point: the harbour around it).
MAX_ZOOM = 11
#: Positions of a track drawn (the newest).
MAX_TRACK = 500

#: AIS navigation statuses (ITU-R M.1371) the catalogue names: ``map.status.<key>``.
STATUS_KEYS: dict[str, str] = {
    "under way using engine": "under_way",
    "under way sailing": "sailing",
    "at anchor": "anchored",
    "moored": "moored",
    "not under command": "not_under_command",
    "restricted manoeuvrability": "restricted",
    "constrained by her draught": "constrained",
    "aground": "aground",
    "engaged in fishing": "fishing",
}

#: Kinds of :class:`Place` (their marker and the words that name them: ``map.place.<kind>``).
PLACE_KINDS = ("port", "terminal", "warehouse", "depot")


class MapError(ValueError):
    """A layer given to the map is not one (bad kind, position out of range)."""


def _coordinate(value: Any, limit: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    if not math.isfinite(number) or abs(number) > limit:
        return None
    return number


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _checked(lat: float, lon: float, what: str) -> None:
    if _coordinate(lat, 90) is None or _coordinate(lon, 180) is None:
        raise MapError(f"{what}: no position at lat {lat!r}, lon {lon!r}")


@dataclass(frozen=True)
class Vessel:
    """A vessel's latest position and its track (oldest first)."""

    lat: float
    lon: float
    name: str | None = None
    imo: str | None = None
    #: When the position was taken (ISO 8601 or Unix seconds).
    time: str | int | None = None
    #: Speed over ground, knots.
    speed: float | None = None
    #: Course over ground, degrees (the marker points that way).
    course: float | None = None
    #: AIS navigation status (``under way using engine``, ``moored``, …).
    status: str | None = None
    source: str = "AIS"
    track: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        _checked(self.lat, self.lon, "vessel")

    @classmethod
    def from_view(cls, vessel: Any) -> Vessel | None:
        """The vessel of a shipment view's ``vessel`` (``ais`` and ``track`` as
        :mod:`gateway.tracking.live` lays them over; else its ``latestPosition``), or None."""
        if not isinstance(vessel, dict):
            return None
        ais = vessel.get("ais") if isinstance(vessel.get("ais"), dict) else None
        latest = ais or (vessel.get("latestPosition")
                         if isinstance(vessel.get("latestPosition"), dict) else None)
        if latest is None:
            return None
        lat, lon = _coordinate(latest.get("lat"), 90), _coordinate(latest.get("lon"), 180)
        if lat is None or lon is None:
            return None
        track = tuple(
            (la, lo) for la, lo in ((_coordinate(p[0], 90), _coordinate(p[1], 180))
                                    for p in (vessel.get("track") or [])
                                    if isinstance(p, list | tuple) and len(p) >= 2)
            if la is not None and lo is not None)
        status = latest.get("status")
        name, imo = vessel.get("name"), vessel.get("imo")
        return cls(lat, lon, name=name if isinstance(name, str) else None,
                   imo=imo if isinstance(imo, str) else None, time=latest.get("time"),
                   speed=_number(latest.get("sog")),
                   course=_number(latest.get("cog")) if latest.get("cog") is not None
                   else _number(latest.get("heading")),
                   status=status if isinstance(status, str) else None,
                   source=str(latest.get("source") or "AIS"), track=track)


@dataclass(frozen=True)
class Place:
    """A place that stands still: a port of call, a terminal, a warehouse, a depot."""

    kind: str
    name: str
    lat: float
    lon: float
    #: Its code (UN/LOCODE, terminal code), shown beside the name.
    code: str | None = None
    #: Since when the subject is there (ISO 8601 or Unix seconds), if that is known.
    since: str | int | None = None

    def __post_init__(self) -> None:
        if self.kind not in PLACE_KINDS:
            raise MapError(f"a place is one of {', '.join(PLACE_KINDS)}, not {self.kind!r}")
        _checked(self.lat, self.lon, self.kind)


@dataclass(frozen=True)
class Truck:
    """A truck's latest position."""

    plate: str
    lat: float
    lon: float
    time: str | int | None = None
    #: km/h.
    speed: float | None = None
    heading: float | None = None

    def __post_init__(self) -> None:
        _checked(self.lat, self.lon, "truck")


def _position(t: Translator, lat: float, lon: float) -> str:
    return t("map.position",
             lat=t("map.lat_n" if lat >= 0 else "map.lat_s", value=f"{abs(lat):.3f}"),
             lon=t("map.lon_e" if lon >= 0 else "map.lon_w", value=f"{abs(lon):.3f}"))


def _status(t: Translator, status: str | None) -> str | None:
    if not status:
        return None
    key = STATUS_KEYS.get(status.lower())
    return t(f"map.status.{key}") if key else status


def _named(name: str | None, code: str | None) -> str:
    if name and code and code not in name:
        return f"{name} ({code})"
    return name or code or "—"


def vessel_label(t: Translator, vessel: Vessel) -> str:
    """One line on the vessel: name, where, when, speed, course and status."""
    who = vessel.name or (t("map.imo", imo=vessel.imo) if vessel.imo else t("map.a_vessel"))
    parts = [t("map.vessel_at", vessel=who, position=_position(t, vessel.lat, vessel.lon),
               when=t.when(vessel.time) if vessel.time is not None else t("common.unknown"),
               source=vessel.source)]
    if vessel.speed is not None:
        parts.append(t("map.speed_kn", speed=f"{vessel.speed:.1f}"))
    if vessel.course is not None:
        parts.append(t("map.course", course=f"{vessel.course % 360:.0f}"))
    status = _status(t, vessel.status)
    if status:
        parts.append(status)
    return t("map.list", first=parts[0], rest=t("map.separator").join(parts[1:])) \
        if len(parts) > 1 else parts[0]


def place_label(t: Translator, place: Place) -> str:
    """What a place is and its name (and since when the subject is there)."""
    text = t(f"map.place.{place.kind}", name=_named(place.name, place.code))
    if place.since is not None:
        text = t("map.since", what=text, when=t.when(place.since))
    return text


def truck_label(t: Translator, truck: Truck) -> str:
    """A truck's plate, where and when, its speed."""
    text = t("map.truck_at", plate=truck.plate, position=_position(t, truck.lat, truck.lon),
             when=t.when(truck.time) if truck.time is not None else t("common.unknown"))
    if truck.speed is not None:
        text = t("map.list", first=text, rest=t("map.speed_kmh", speed=f"{truck.speed:.0f}"))
    return text


def describe(t: Translator, *, vessel: Vessel | None = None, port: Place | None = None,
             places: Sequence[Place] = (), trucks: Sequence[Truck] = ()) -> str:
    """What the map shows, in words (plain text: the fallback and the map's description)."""
    sentences = []
    if vessel is not None:
        sentences.append(vessel_label(t, vessel) + t("map.stop"))
        if len(vessel.track) > 1:
            sentences.append(t("map.track", count=len(vessel.track)) + t("map.stop"))
    if port is not None:
        sentences.append(t("map.port_of_call", name=_named(port.name, port.code)) + t("map.stop"))
    sentences += [place_label(t, p) + t("map.stop") for p in places]
    sentences += [truck_label(t, k) + t("map.stop") for k in trucks]
    return "".join(sentences).strip()


def _rounded(value: float) -> float:
    return round(value, 5)


def layers(t: Translator, *, vessel: Vessel | None = None, port: Place | None = None,
           places: Sequence[Place] = (), trucks: Sequence[Truck] = ()) -> dict[str, Any]:
    """The map's layers as the script reads them (labels translated)."""
    out: dict[str, Any] = {}
    if vessel is not None:
        track = vessel.track[-MAX_TRACK:]
        out["vessel"] = {
            "lat": _rounded(vessel.lat), "lon": _rounded(vessel.lon),
            "name": vessel.name or (t("map.imo", imo=vessel.imo) if vessel.imo else ""),
            "course": vessel.course, "label": vessel_label(t, vessel),
            "time": iso(vessel.time),
            "track": [[_rounded(a), _rounded(b)] for a, b in track],
            "trackLabel": t("map.track", count=len(track)),
        }
    if port is not None:
        out["port"] = {"lat": _rounded(port.lat), "lon": _rounded(port.lon),
                       "name": port.name or port.code or "",
                       "label": t("map.port_of_call", name=_named(port.name, port.code))}
    if places:
        out["places"] = [{"kind": p.kind, "lat": _rounded(p.lat), "lon": _rounded(p.lon),
                          "name": p.name or p.code or "", "label": place_label(t, p)}
                         for p in places]
    if trucks:
        out["trucks"] = [{"lat": _rounded(k.lat), "lon": _rounded(k.lon), "name": k.plate,
                          "course": k.heading, "label": truck_label(t, k),
                          "time": iso(k.time)} for k in trucks]
    return out


def map_html(t: Translator, *, title: str, vessel: Vessel | None = None,
             port: Place | None = None, places: Sequence[Place] = (),
             trucks: Sequence[Truck] = (), fallback: str | None = None,
             map_id: str = "map") -> str:
    """A map of the given layers: ``<div class=map>`` with its layers in ``data-map`` (JSON) and
    the text ``fallback`` (default: :func:`describe`) inside it; ``title`` is its accessible name
    (plain text). With no layer at all, a short text saying there is nothing to show. The page
    passes :data:`ASSETS` to ``render`` for the script to draw it."""
    data = layers(t, vessel=vessel, port=port, places=places, trucks=trucks)
    if not data:
        return f'<p class="map-none muted">{e(t("map.nothing"))}</p>'
    text = fallback if fallback is not None else describe(t, vessel=vessel, port=port,
                                                          places=places, trucks=trucks)
    settings = {"land": LAND, "maxZoom": MAX_ZOOM, "label": title,
                "zoomIn": t("map.zoom_in"), "zoomOut": t("map.zoom_out"),
                "keys": t("map.keys"), "attribution": "Natural Earth · Leaflet"}
    payload = json.dumps({**settings, "layers": data}, ensure_ascii=False,
                         separators=(",", ":"))
    return (f'<div class=map id="{e(map_id)}" data-map="{e(payload)}">'
            f'<p class=map-text id="{e(map_id)}-text">{e(text)}</p></div>')
