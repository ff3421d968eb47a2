"""SIMULATED AIS: a vessel's voyage as the NMEA a shore station would relay (pyais's encoder).

Nothing here is real traffic: the vessel, its track and its voyage data are made up for the
demo. The writer speaks real AIS all the same, so the gateway's adapter
(:mod:`gateway.feeds.ais`) reads it like any station's output:

- type 1 position reports (class A) along the geodesic from a start to an end position
  (geographiclib, WGS84), at a steady speed, one every ``interval`` seconds; the last one
  moored at the end;
- type 5 static and voyage data (IMO number, call sign, name, type, dimensions, draught,
  destination, ETA) in two fragments, first and then every ``static_every`` positions, with
  the sequence id counting 0..9 and wrapping as real stations do;
- optionally an NMEA 4.10 tag block before each sentence (``\\s:<station>,c:<unix time>*hh\\``),
  which gives the gateway the time of each report.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from geographiclib.geodesic import Geodesic
from pyais.encode import encode_dict
from pyais.messages import TagBlock

#: One knot in metres per second.
KNOT = 1852 / 3600


@dataclass(frozen=True)
class SimVessel:
    """A SIMULATED vessel's static data (type 5)."""

    mmsi: int
    imo: str
    """Seven digits, check digit included."""
    name: str
    """At most 20 characters of AIS six-bit text (upper case)."""
    callsign: str
    """At most 7 characters."""
    destination: str
    """At most 20 characters, e.g. a UN/LOCODE."""
    ship_type: int = 70
    """ITU-R M.1371 type of ship and cargo (70: cargo)."""
    to_bow: int = 200
    to_stern: int = 166
    to_port: int = 25
    to_starboard: int = 26
    draught: float = 13.5
    """Metres, 0.1 m resolution."""

    def __post_init__(self) -> None:
        if not 0 < self.mmsi < 1_000_000_000:
            raise ValueError(f"MMSI {self.mmsi} is not 9 digits")
        if not (len(self.imo) == 7 and self.imo.isdigit()):
            raise ValueError(f"IMO {self.imo!r} is not 7 digits")
        for name, text, limit in (("name", self.name, 20), ("callsign", self.callsign, 7),
                                  ("destination", self.destination, 20)):
            if len(text) > limit or text != text.upper():
                raise ValueError(f"{name} {text!r}: at most {limit} upper-case characters")


@dataclass(frozen=True)
class Fix:
    """One SIMULATED position report."""

    time: int
    """Unix seconds."""
    lat: float
    lon: float
    sog: float
    """Knots."""
    cog: float
    """Degrees."""
    heading: int
    """Degrees."""
    status: int
    """Navigational status (0 under way using engine, 5 moored)."""


def track(start: tuple[float, float], end: tuple[float, float], *, start_time: int,
          speed_knots: float, interval: int) -> list[Fix]:
    """Fixes along the geodesic from ``start`` to ``end`` (lat, lon), the last one moored.

    Parameters
    ----------
    start, end : tuple of float
        Latitude and longitude in degrees.
    start_time : int
        Unix time of the first fix.
    speed_knots : float
        Speed over ground while under way.
    interval : int
        Seconds between two fixes.
    """
    if speed_knots <= 0 or interval <= 0:
        raise ValueError("speed and interval must be above 0")
    line = Geodesic.WGS84.InverseLine(start[0], start[1], end[0], end[1])
    step = speed_knots * KNOT * interval
    fixes: list[Fix] = []
    travelled, at = 0.0, start_time
    while travelled < line.s13:
        point = line.Position(travelled)
        course = point["azi2"] % 360
        fixes.append(Fix(at, round(point["lat2"], 6), round(point["lon2"], 6),
                         float(speed_knots), round(course, 1), round(course) % 360, 0))
        travelled += step
        at += interval
    last = line.Position(line.s13)
    heading = round(last["azi2"] % 360) % 360
    fixes.append(Fix(at, round(last["lat2"], 6), round(last["lon2"], 6), 0.0, 0.0, heading, 5))
    return fixes


def position_sentence(vessel: SimVessel, fix: Fix, *, channel: str = "A") -> str:
    """A type 1 position report of ``vessel`` at ``fix``."""
    [line] = encode_dict({
        "type": 1, "mmsi": vessel.mmsi, "status": fix.status, "speed": fix.sog,
        "accuracy": 1, "lon": fix.lon, "lat": fix.lat, "course": fix.cog,
        "heading": fix.heading, "second": fix.time % 60,
    }, talker_id="AI", sentence_type="VDM", radio_channel=channel)
    return line


def static_sentences(vessel: SimVessel, *, eta: int, seq_id: int,
                     channel: str = "A") -> list[str]:
    """A type 5 message of ``vessel`` (ETA ``eta``, Unix time) in its two fragments."""
    when = time.gmtime(eta)
    lines = encode_dict({
        "type": 5, "mmsi": vessel.mmsi, "ais_version": 2, "imo": int(vessel.imo),
        "callsign": vessel.callsign, "shipname": vessel.name, "ship_type": vessel.ship_type,
        "to_bow": vessel.to_bow, "to_stern": vessel.to_stern, "to_port": vessel.to_port,
        "to_starboard": vessel.to_starboard, "epfd": 1, "month": when.tm_mon,
        "day": when.tm_mday, "hour": when.tm_hour, "minute": when.tm_min,
        "draught": vessel.draught, "destination": vessel.destination, "dte": 0,
    }, talker_id="AI", sentence_type="VDM", radio_channel=channel, seq_id=seq_id % 10)
    if len(lines) != 2:  # 424 bits are two sentences of at most 60 characters
        raise AssertionError(f"type 5 came out in {len(lines)} sentences")
    return lines


def write_track(vessel: SimVessel, fixes: list[Fix], *, eta: int, static_every: int = 6,
                tag_blocks: bool = True, station: str = "PLSIM01") -> str:
    """The NMEA a station relays for ``vessel`` sailing ``fixes`` (one sentence a line).

    Type 5 comes first and then after every ``static_every`` positions (sequence ids 0..9,
    wrapping); with ``tag_blocks`` every sentence carries the station and the fix's time.
    """
    return "".join(line + "\r\n" for line in _lines(vessel, fixes, eta=eta,
                                                     static_every=static_every,
                                                     tag_blocks=tag_blocks, station=station))


def _lines(vessel: SimVessel, fixes: list[Fix], *, eta: int, static_every: int,
           tag_blocks: bool, station: str) -> Iterator[str]:
    sequence = 0
    for index, fix in enumerate(fixes):
        sentences: list[str] = []
        if index % max(static_every, 1) == 0:
            sentences.extend(static_sentences(vessel, eta=eta, seq_id=sequence))
            sequence += 1
        sentences.append(position_sentence(vessel, fix))
        for sentence in sentences:
            if tag_blocks:
                block = TagBlock.create_str(source_station=station,  # type: ignore[arg-type]
                                            receiver_timestamp=fix.time)  # type: ignore[arg-type]
                yield f"\\{block}\\{sentence}"
            else:
                yield sentence
