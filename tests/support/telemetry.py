"""Helpers of the telemetry tests: real AIS sentences as readings, and readings we make.

The AIS readings come from GPSD's ``test/sample.aivdm`` (an excerpt in
``tests/data/telemetry``, BSD-2-Clause; see ``SOURCES.md``), read by the gateway's own AIS
adapter (:mod:`gateway.feeds.ais`, pyais underneath): the readings a terminal's AIS feed gives
the telemetry store. Each message in GPSD's file is followed by its decode checked with
independent decoders (noaadata, Maritec), which :func:`gpsd_checked_positions` reads back so a
test can compare what the store returns with it.

Data that is ours, labelled so: :func:`ours_position` (one AIS type 1 sentence encoded with pyais
for a vessel whose static data is in GPSD's file), :func:`reefer_readings` and
:func:`truck_readings`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyais

from gateway.events.identifiers import container_check_digit
from gateway.events.model import Reference
from gateway.feeds import ais
from gateway.telemetry.model import Reading

DATA = Path(__file__).resolve().parents[1] / "data" / "telemetry"
GPSD_SAMPLE = DATA / "gpsd-sample-excerpt.aivdm"

#: The vessel of GPSD's type 5 sample: EVER DIADEM.
EVER_DIADEM_MMSI = 351759000
EVER_DIADEM_IMO = "9134270"

_POSITION_TYPES = {1, 2, 3, 18, 19}


def ais_readings(data: bytes, received_at: int) -> list[Reading]:
    """The readings the AIS adapter makes of ``data`` (every line must be read)."""
    result = ais.parse(data, received_at=received_at)
    assert result.recognised and not result.errors, result.errors
    return list(result.readings)


def gpsd_readings(received_at: int) -> list[Reading]:
    """The readings of GPSD's sample messages (no time in the file: all at ``received_at``)."""
    return ais_readings(GPSD_SAMPLE.read_bytes(), received_at)


_CHECKED = re.compile(r"^#\s*(UserID|MMSI|longitude|latitude|Longitude|Latitude)\s*:?\s+"
                      r"(-?[\d.]+)", re.MULTILINE)


def gpsd_checked_positions() -> dict[int, tuple[float, float]]:
    """MMSI -> (lat, lon) of every position message, as GPSD's checked decodes state them."""
    out: dict[int, tuple[float, float]] = {}
    text = GPSD_SAMPLE.read_text()
    for section in re.split(r"\n(?=# Type )", text):
        head = re.match(r"# Type (\d+)", section)
        if head is None or int(head.group(1)) not in _POSITION_TYPES:
            continue
        found = {k.lower(): v for k, v in _CHECKED.findall(section)}
        mmsi = int(found.get("userid") or found["mmsi"])
        out[mmsi] = (float(found["latitude"]), float(found["longitude"]))
    return out


def ours_position(mmsi: int, lat: float, lon: float, sog: float, cog: float) -> bytes:
    """OURS: an AIS type 1 sentence encoded with pyais (not a third-party sample); read it
    with :func:`ais_readings`."""
    sentences = pyais.encode_dict({"type": 1, "mmsi": mmsi, "lat": lat, "lon": lon,
                                   "speed": sog, "course": cog, "heading": int(cog)},
                                  talker_id="AI", sentence_type="VDM")
    assert len(sentences) == 1
    return sentences[0].encode()


def container(owner: str, serial: int) -> str:
    """A valid ISO 6346 number (``owner``: 3 letters + U)."""
    first = f"{owner}{serial:06d}"
    return first + str(container_check_digit(first))


def reefer_readings(number: str, start: int, count: int, *, setpoint: float = -18.0,
                    excursion: range = range(0), step: int = 900) -> list[Reading]:
    """OURS: a reefer's readings every ``step`` seconds; those in ``excursion`` run warm."""
    return [
        Reading("reefer", start + i * step, Reference("container", number), {
            "temperature": round(setpoint + (6.5 if i in excursion else 0.1 * (i % 3)), 2),
            "setpoint": setpoint, "unit": "CEL", "humidity": 80 + i % 5,
        })
        for i in range(count)
    ]


def truck_readings(plate: str, start: int, count: int, *, job: str = "JOB-1") -> list[Reading]:
    """OURS: a truck's GPS fixes from Kwai Chung towards Tsuen Wan, a minute apart."""
    return [
        Reading("truck-position", start + 60 * i, Reference("truck", plate), {
            "lat": round(22.3390 + 0.001 * i, 6), "lon": round(114.1240 + 0.0012 * i, 6),
            "speed": 35.0, "heading": 40, "job": job,
        })
        for i in range(count)
    ]
