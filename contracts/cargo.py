"""Cargo events: the packed batch encoding of ``CargoLedger.record()`` and its logs.

A cargo event says that something happened (or is planned or estimated to happen) to a
subject: a container, a master or house bill of lading, an air waybill, a declaration or a
shipment. The subject is named on chain only by its *subject key*, the keccak-256 hash of the
normalised reference (see :func:`subject_key`); reference numbers are not secrets, and the
hash is an index, not a protection.

Calldata layout
---------------
``record()`` takes no ABI arguments: the calldata is the 4-byte selector of ``record()``
followed by the events, packed back to back. Every event is a fixed 87-byte header and its
encrypted payload, zero-padded up to the next *payload class* (0, every multiple of 32 up to
256, then 384, 512, 768 or 1024 bytes), because Vyper copies only constant-length slices of
calldata; the contract finds the class by a binary search on the length::

    offset  size  field
    0       2     event type, uint16 = family << 8 | code (see EVENT_TYPES)
    2       1     classifier: 1 PLN (planned), 2 EST (estimated), 3 ACT (actual)
    3       5     event time, uint40 Unix seconds
    8       5     UN/LOCODE, 5 ASCII bytes (zeros if none)
    13      8     retracted event id, uint64 (0 if the event retracts nothing)
    21      2     payload length L, uint16, at most 1024
    23      32    subject key
    55      32    payload hash (keccak-256 of the plaintext payload)
    87      P     encrypted payload: L bytes, then zeros up to the payload class P >= L

The fixed fields are packed into the header's first word so that the contract reads type,
retraction and length with one ``CALLDATALOAD``-sized slice.

Logs
----
One ``LOG4`` per event: ``topics = [CARGO_EVENT_TOPIC, subject key, publisher organisation id,
event id]`` and ``data`` = the event's bytes exactly as in the calldata (header and padded
payload). The topic is the ABI signature ``CargoEvent(bytes32,uint256,uint256)``, so standard
tools decode the three indexed fields; :func:`decode_event_log` decodes the data.
Each call also emits one ABI event ``CargoBatch(batch, publisher, count)``.

Event ids
---------
``event id = batch sequence << 16 | index in batch``; the first batch is 1, so id 0 means
"none". The contract stores one word per batch (publisher organisation and event count), which
is what a retraction checks: only the publisher may retract its own events, and the retracted
event must exist. Nothing else is stored per event: the "latest status per subject" of the design
note is left to the gateway's read model, because keeping it on chain would cost a storage write
per event (20 000 gas for a new subject, several times all the rest an event costs).

Malformed input
---------------
Unknown types, types the caller's roles may not publish, bad classifiers, oversized payloads,
bad retractions and batches of more than :data:`MAX_BATCH_EVENTS` revert with a ``cargo: ...``
reason. A batch whose bytes end inside an event reverts without a reason: the bounds check of
the calldata copy catches it, which costs nothing extra per event.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils.crypto import keccak

from contracts import ROLES

#: The 4-byte selector of ``record()``.
RECORD_SELECTOR: bytes = keccak(b"record()")[:4]

#: topic0 of every cargo event log.
CARGO_EVENT_TOPIC: bytes = keccak(b"CargoEvent(bytes32,uint256,uint256)")

#: Size of the fixed part of an event.
HEADER_SIZE = 87

#: Payload classes: the encrypted payload is zero-padded to the smallest class that holds it.
PAYLOAD_CLASSES: tuple[int, ...] = (0, 32, 64, 96, 128, 160, 192, 224, 256, 384, 512, 768, 1024)

#: Longest encrypted payload one event carries.
MAX_PAYLOAD = PAYLOAD_CLASSES[-1]

#: Most events one ``record()`` call may carry (the index is 16 bits).
MAX_BATCH_EVENTS = 1000

#: Event classifiers (DCSA eventClassifierCode).
CLASSIFIERS: dict[str, int] = {"PLN": 1, "EST": 2, "ACT": 3}

_R = ROLES

#: Event families: (name, event codes in order (code = position + 1), roles that may publish).
FAMILIES: dict[int, tuple[str, tuple[str, ...], int]] = {
    1: (
        "SHIPMENT",
        (
            "RECE",
            "DRFT",
            "PENA",
            "PENU",
            "PENC",
            "CONF",
            "REJE",
            "APPR",
            "ISSU",
            "SURR",
            "SUBM",
            "VOID",
            "REQS",
            "CMPL",
            "HOLD",
            "RELS",
            "CANC",
        ),
        _R["carrier"] | _R["agent"] | _R["forwarder"],
    ),
    2: ("TRANSPORT", ("ARRI", "DEPA"), _R["carrier"] | _R["agent"] | _R["terminal"]),
    # Equipment events that happen at (and only are reported by) a terminal; AVPU, available
    # for pick-up, is the terminal release.
    3: ("TERMINAL", ("LOAD", "DISC", "GTIN", "GTOT", "AVPU"), _R["terminal"]),
    4: (
        "EQUIPMENT",
        ("STUF", "STRP", "PICK", "DROP", "INSP", "RSEA", "RMVD"),
        _R["carrier"]
        | _R["forwarder"]
        | _R["haulier"]
        | _R["warehouse"]
        | _R["terminal"]
        | _R["customs"],
    ),
    5: (
        "REEFER",
        ("MEAS", "ADJU"),
        _R["terminal"] | _R["carrier"] | _R["haulier"] | _R["warehouse"],
    ),
    6: (
        "LAND",
        ("PICK_UP", "HAND_OVER", "DELIVERY", "POSITION_ANCHOR"),
        _R["haulier"] | _R["forwarder"] | _R["warehouse"],
    ),
    7: ("WAREHOUSE", ("RECEIPT", "RELEASE"), _R["warehouse"]),
    8: (
        "AIR",
        (
            "BKD",
            "RCS",
            "FOH",
            "PRE",
            "MAN",
            "DEP",
            "TFD",
            "RCT",
            "ARR",
            "RCF",
            "NFD",
            "AWR",
            "AWD",
            "CCD",
            "DLV",
            "DDL",
            "DIS",
        ),
        _R["airline"] | _R["agent"] | _R["forwarder"] | _R["warehouse"],
    ),
    # CUSR customs released, CUSH held, CUSI inspection ordered, CUSX refused.
    9: ("CUSTOMS", ("CUSR", "CUSH", "CUSI", "CUSX"), _R["customs"]),
}

#: Event type codes by ``"FAMILY.CODE"`` name, e.g. ``EVENT_TYPES["TERMINAL.DISC"] == 0x0302``.
EVENT_TYPES: dict[str, int] = {
    f"{name}.{code}": family << 8 | (i + 1)
    for family, (name, codes, _) in FAMILIES.items()
    for i, code in enumerate(codes)
}


def family_table() -> int:
    """Pack the families into the contract's ``FAMILY_TABLE`` constant.

    Returns
    -------
    int
        16 bits per family (family 0 is never valid): the low 11 bits are the roles that may
        publish, the high 5 bits the number of codes.
    """
    table = 0
    for family, (_, codes, roles) in FAMILIES.items():
        table |= (roles | len(codes) << 11) << (16 * family)
    return table


@dataclass(frozen=True)
class CargoEventInput:
    """One cargo event as the publisher submits it."""

    subject: bytes
    """Subject key, 32 bytes (see :func:`subject_key`)."""
    event_type: int
    """Event type code (a value of :data:`EVENT_TYPES`)."""
    classifier: int
    """1 PLN, 2 EST, 3 ACT."""
    event_time: int
    """Unix seconds."""
    location: str = ""
    """UN/LOCODE, e.g. ``"HKHKG"``; empty if none."""
    payload_hash: bytes = b"\x00" * 32
    """keccak-256 of the plaintext payload."""
    payload: bytes = b""
    """Encrypted payload, at most :data:`MAX_PAYLOAD` bytes."""
    retracts: int = 0
    """Id of the event this one retracts, 0 if none."""


@dataclass(frozen=True)
class CargoEvent(CargoEventInput):
    """A recorded cargo event, decoded from its log."""

    event_id: int = 0
    """Stable id: batch sequence << 16 | index."""
    publisher: int = 0
    """Publishing organisation id."""


def subject_key(reference: str) -> bytes:
    """Hash a reference number into a subject key.

    Parameters
    ----------
    reference : str
        A container number, B/L number, air waybill, declaration or shipment reference.

    Returns
    -------
    bytes
        keccak-256 of the reference upper-cased with spaces, dashes and slashes removed.
    """
    normalised = "".join(c for c in reference.upper() if c not in " -/")
    return keccak(normalised.encode())


def payload_class(length: int) -> int:
    """Return the padded size of a payload of ``length`` bytes.

    Parameters
    ----------
    length : int
        Payload length in bytes.

    Returns
    -------
    int
        The smallest payload class that holds it.

    Raises
    ------
    ValueError
        If the payload is longer than :data:`MAX_PAYLOAD`.
    """
    for size in PAYLOAD_CLASSES:
        if length <= size:
            return size
    raise ValueError(f"payload of {length} bytes exceeds {MAX_PAYLOAD}")


def encode_event(event: CargoEventInput) -> bytes:
    """Pack one event as it appears in calldata and in its log's data.

    Parameters
    ----------
    event : CargoEventInput
        The event.

    Returns
    -------
    bytes
        Header and zero-padded payload.
    """
    if len(event.subject) != 32 or len(event.payload_hash) != 32:
        raise ValueError("subject and payload hash must be 32 bytes")
    location = event.location.encode("ascii")
    if len(location) not in (0, 5):
        raise ValueError(f"bad UN/LOCODE {event.location!r}")
    size = payload_class(len(event.payload))
    header = (
        event.event_type.to_bytes(2, "big")
        + event.classifier.to_bytes(1, "big")
        + event.event_time.to_bytes(5, "big")
        + location.ljust(5, b"\x00")
        + event.retracts.to_bytes(8, "big")
        + len(event.payload).to_bytes(2, "big")
        + event.subject
        + event.payload_hash
    )
    return header + event.payload.ljust(size, b"\x00")


def encode_record_call(events: list[CargoEventInput]) -> bytes:
    """Build the full calldata of one ``record()`` call.

    Parameters
    ----------
    events : list of CargoEventInput
        One to :data:`MAX_BATCH_EVENTS` events.

    Returns
    -------
    bytes
        Selector followed by the packed events.
    """
    if not 1 <= len(events) <= MAX_BATCH_EVENTS:
        raise ValueError(f"a batch carries 1 to {MAX_BATCH_EVENTS} events")
    return RECORD_SELECTOR + b"".join(encode_event(e) for e in events)


def decode_event(data: bytes) -> CargoEventInput:
    """Decode one packed event (calldata slice or log data).

    Parameters
    ----------
    data : bytes
        Header and padded payload.

    Returns
    -------
    CargoEventInput
        The event.
    """
    length = int.from_bytes(data[21:23], "big")
    location = data[8:13].rstrip(b"\x00").decode("ascii")
    return CargoEventInput(
        subject=bytes(data[23:55]),
        event_type=int.from_bytes(data[0:2], "big"),
        classifier=data[2],
        event_time=int.from_bytes(data[3:8], "big"),
        location=location,
        payload_hash=bytes(data[55:87]),
        payload=bytes(data[87 : 87 + length]),
        retracts=int.from_bytes(data[13:21], "big"),
    )


def decode_record_call(calldata: bytes) -> list[CargoEventInput]:
    """Decode the events of a ``record()`` call's calldata.

    Parameters
    ----------
    calldata : bytes
        Selector followed by packed events.

    Returns
    -------
    list of CargoEventInput
        The events in order.
    """
    if calldata[:4] != RECORD_SELECTOR:
        raise ValueError("not a record() call")
    events, offset = [], 4
    while offset < len(calldata):
        length = int.from_bytes(calldata[offset + 21 : offset + 23], "big")
        size = HEADER_SIZE + payload_class(length)
        events.append(decode_event(calldata[offset : offset + size]))
        offset += size
    return events


def decode_event_log(topics: list[bytes], data: bytes) -> CargoEvent:
    """Decode one cargo event log.

    Parameters
    ----------
    topics : list of bytes
        The log's four topics.
    data : bytes
        The log's data.

    Returns
    -------
    CargoEvent
        The event with its id and publisher.
    """
    if len(topics) != 4 or bytes(topics[0]) != CARGO_EVENT_TOPIC:
        raise ValueError("not a cargo event log")
    base = decode_event(data)
    return CargoEvent(
        **base.__dict__,
        publisher=int.from_bytes(bytes(topics[2]), "big"),
        event_id=int.from_bytes(bytes(topics[3]), "big"),
    )
