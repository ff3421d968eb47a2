"""Helpers of the telemetry tests: real AIS sentences as readings, and readings we make.

The AIS readings come from GPSD's ``test/sample.aivdm`` (an excerpt in
``tests/data/telemetry``, BSD-2-Clause; see ``SOURCES.md``), decoded with pyais (fragments
grouped in order). Each message there is followed by its decode checked with independent
decoders (noaadata, Maritec), which :func:`gpsd_checked_positions` reads back so a test can
compare what the store returns with it.

Data that is ours, labelled so: :func:`ours_position` (one AIS type 1 sentence encoded with pyais
for a vessel whose static data is in GPSD's file), :func:`reefer_readings` and
:func:`truck_readings`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyais

from gateway.events.identifiers import container_check_digit
from gateway.events.model import Reference
from gateway.telemetry.model import Reading

DATA = Path(__file__).resolve().parents[1] / "data" / "telemetry"
GPSD_SAMPLE = DATA / "gpsd-sample-excerpt.aivdm"

#: The vessel of GPSD's type 5 sample: EVER DIADEM.
EVER_DIADEM_MMSI = 351759000
EVER_DIADEM_IMO = "9134270"

_POSITION_TYPES = {1, 2, 3, 18, 19}


def gpsd_sentences(path: Path = GPSD_SAMPLE) -> list[list[bytes]]:
    """The AIVDM messages of the file, each as its fragments in order (comments skipped)."""
    messages: list[list[bytes]] = []
    group: list[bytes] = []
    for line in path.read_bytes().splitlines():
        if not line.startswith(b"!AIVD"):
            continue
        fields = line.split(b",")
        count, number = int(fields[1]), int(fields[2])
        group = [line] if number == 1 else [*group, line]
        if number == count:
            messages.append(group)
            group = []
    return messages


def _value(value: Any) -> Any:
    """A pyais field as plain JSON (its enums are ints)."""
    return int(value) if hasattr(value, "value") else value


def reading_of(fragments: list[bytes], time: int) -> Reading | None:
    """The reading of one AIS message (positions and static data), or None for other types.

    Values are named as ``gateway.telemetry.model`` documents: ``mmsi``, ``lat``, ``lon`` (degrees),
    ``sog``, ``cog``, ``heading``, ``status``; static data ``imo``, ``callsign``, ``name``,
    ``destination``, ``eta``, ``ship_type``.
    """
    decoded = pyais.decode(*fragments).asdict()
    kind = decoded["msg_type"]
    mmsi = int(decoded["mmsi"])
    if kind in _POSITION_TYPES:
        values: dict[str, Any] = {"mmsi": mmsi, "lat": decoded["lat"], "lon": decoded["lon"],
                                  "sog": decoded["speed"], "cog": decoded["course"],
                                  "heading": decoded["heading"]}
        if "status" in decoded:
            values["status"] = _value(decoded["status"])
        return Reading("ais-position", time, None, values)
    if kind in (5, 24):
        values = {"mmsi": mmsi}
        for name, source in (("imo", "imo"), ("callsign", "callsign"), ("name", "shipname"),
                             ("destination", "destination"), ("ship_type", "ship_type")):
            if decoded.get(source) not in (None, "", 0):
                values[name] = _value(decoded[source])
        if kind == 5:
            values["eta"] = (f"{decoded['month']:02d}-{decoded['day']:02d}T"
                             f"{decoded['hour']:02d}:{decoded['minute']:02d}")
        return Reading("ais-static", time, None, values)
    return None


def gpsd_readings(received_at: int) -> list[Reading]:
    """The readings of GPSD's sample messages, one second apart from ``received_at``."""
    out = []
    for i, fragments in enumerate(gpsd_sentences()):
        reading = reading_of(fragments, received_at + i)
        if reading is not None:
            out.append(reading)
    return out


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
    """OURS: an AIS type 1 sentence encoded with pyais (not a third-party sample)."""
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
