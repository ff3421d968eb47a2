"""A vessel's ETA from its AIS position and speed (pure): distance to the port of call / speed.

The distance is **geodesic** — the shortest path on the WGS84 ellipsoid (geographiclib's
``Geodesic.WGS84.Inverse``), which ignores land. No sea-route network is shipped, so the
result says ``"method": "geodesic"``: for a vessel in open water heading for the port it is a
fair estimate, for one that must round a coast it is early. It is shown beside the carrier's
and the terminal's ETAs with its source and age, never instead of them.

Port positions (:data:`PORTS`) are the container terminal areas of the ports the gateway knows,
in decimal degrees (to 0.01°, about 1 km) — a port of call the table does not know gives no
AIS-derived ETA rather than a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from geographiclib.geodesic import Geodesic

from gateway.isotime import iso_time

#: Metres in a nautical mile.
NAUTICAL_MILE = 1852.0

#: Below this speed over ground (knots) a vessel is not under way towards anything: no ETA.
MIN_SPEED_KN = 0.5

#: Within this distance (nautical miles) a vessel is at the port: no ETA ahead.
ARRIVED_NM = 2.0


@dataclass(frozen=True)
class Port:
    locode: str
    name: str
    lat: float
    lon: float


#: Ports by UN/LOCODE: container terminal areas (decimal degrees).
PORTS: dict[str, Port] = {p.locode: p for p in (
    Port("HKHKG", "Hong Kong (Kwai Tsing)", 22.34, 114.12),
    Port("CNYTN", "Yantian", 22.57, 114.27),
    Port("CNSHK", "Shekou", 22.47, 113.89),
    Port("CNSHA", "Shanghai (Yangshan)", 30.63, 122.07),
    Port("CNNGB", "Ningbo (Beilun)", 29.93, 121.88),
    Port("CNCAN", "Guangzhou (Nansha)", 22.68, 113.65),
    Port("CNXMN", "Xiamen", 24.48, 118.07),
    Port("TWKHH", "Kaohsiung", 22.56, 120.32),
    Port("KRPUS", "Busan", 35.08, 128.83),
    Port("JPTYO", "Tokyo", 35.61, 139.79),
    Port("SGSIN", "Singapore", 1.27, 103.75),
    Port("MYPKG", "Port Klang", 2.99, 101.36),
    Port("VNSGN", "Ho Chi Minh City (Cat Lai)", 10.76, 106.79),
    Port("THLCH", "Laem Chabang", 13.08, 100.88),
    Port("AEJEA", "Jebel Ali", 25.01, 55.06),
    Port("NLRTM", "Rotterdam (Maasvlakte)", 51.95, 4.05),
    Port("BEANR", "Antwerp", 51.28, 4.30),
    Port("DEHAM", "Hamburg", 53.53, 9.93),
    Port("GBFXT", "Felixstowe", 51.95, 1.32),
    Port("USLAX", "Los Angeles", 33.73, -118.26),
    Port("USLGB", "Long Beach", 33.75, -118.21),
)}


def distance_nm(lat: float, lon: float, port: Port) -> float:
    """Geodesic distance from a position to a port, nautical miles."""
    result = Geodesic.WGS84.Inverse(lat, lon, port.lat, port.lon, Geodesic.DISTANCE)
    return float(result["s12"]) / NAUTICAL_MILE


def ais_eta(position: dict[str, Any], position_time: int, locode: str) -> dict[str, Any] | None:
    """The AIS-derived ETA at ``locode`` from a position (``lat``, ``lon``, ``sog`` in knots)
    taken at ``position_time``; None when the port is unknown, the position or speed is
    missing, or the vessel is not under way (sog < :data:`MIN_SPEED_KN`)."""
    port = PORTS.get(locode)
    lat, lon, sog = position.get("lat"), position.get("lon"), position.get("sog")
    if port is None or not isinstance(lat, int | float) or not isinstance(lon, int | float):
        return None
    distance = distance_nm(float(lat), float(lon), port)
    base: dict[str, Any] = {"source": "AIS-derived", "method": "geodesic",
                            "port": locode, "portName": port.name,
                            "distanceNm": round(distance, 1),
                            "basedOn": iso_time(position_time)}
    if distance <= ARRIVED_NM:
        return {**base, "time": iso_time(position_time), "speedKn": sog, "atPort": True}
    if not isinstance(sog, int | float) or sog < MIN_SPEED_KN:
        return None
    hours = distance / float(sog)
    return {**base, "time": iso_time(position_time + round(hours * 3600)),
            "speedKn": round(float(sog), 1), "hours": round(hours, 1)}
