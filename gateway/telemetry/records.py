"""What the telemetry store gives back: stored readings, vessels, anchor batches (pure records).

:class:`StoredReading` is a reading with its id, owner, visibility and anchor state
(:class:`AnchorState`); its :attr:`~StoredReading.access` is what the visibility rule reads.
:class:`Vessel` is what static AIS data says about a vessel; :class:`BatchRecord` an anchor
batch as recorded; :class:`Unanchored` a reading waiting for a batch. The store is
:mod:`gateway.telemetry.store`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.events.identifiers import imo_check_digit
from gateway.events.model import Visibility
from gateway.isotime import iso_time
from gateway.telemetry.model import Reading
from gateway.telemetry.visibility import Access


@dataclass(frozen=True)
class AnchorState:
    """Where a reading's anchoring stands."""

    batch_id: int
    """Its batch."""
    index: int
    """Its position in the batch (the Merkle tree's leaf order)."""
    status: str
    """``formed``, ``submitted``, ``anchored`` or ``failed``."""
    anchor_id: int | None = None
    """Anchors' id of the batch, once anchored."""
    block: int | None = None
    """Block of the ``Anchored`` log."""
    tx_hash: str | None = None
    """Transaction that anchored it."""

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "batch": self.batch_id, "index": self.index,
                "anchorId": self.anchor_id, "block": self.block, "txHash": self.tx_hash}


@dataclass(frozen=True)
class StoredReading:
    """A reading as stored: the reading, its id, owner, visibility and anchoring."""

    id: int
    """The store's id (upload order)."""
    org_id: int
    """Owner: the gateway organisation that uploaded it."""
    owner: int | None
    """The owner's Consortium organisation id (None: not a member on chain at upload)."""
    reading: Reading
    """The reading itself (decrypted)."""
    visibility: Visibility
    """Who besides the owner may read it (private readings; public ones are everyone's)."""
    received: int
    """When the gateway stored it, Unix seconds."""
    anchor: AnchorState | None
    """Its batch, None until it is batched (or never, for readings that are not anchored)."""

    @property
    def access(self) -> Access:
        """The metadata the visibility rule reads."""
        return Access(self.org_id, self.owner, self.reading.public, self.visibility.mode,
                      self.visibility.readers, self.reading.subject is not None)

    @property
    def mmsi(self) -> int | None:
        return mmsi_of(self.reading.values)

    def to_json(self) -> dict[str, Any]:
        """The API's form: the reading's report form plus ``id``, ``owner``, ``anchor``."""
        body = self.reading.to_json()
        body["id"] = self.id
        body["owner"] = self.owner
        body["receivedAt"] = iso_time(self.received)
        body["anchor"] = self.anchor.to_json() if self.anchor else None
        return body


@dataclass(frozen=True)
class Vessel:
    """What static AIS data says about a vessel (by MMSI)."""

    mmsi: int
    imo: str | None
    """7-digit IMO number (as broadcast: the check digit is not enforced)."""
    name: str | None
    callsign: str | None
    destination: str | None
    eta: str | None
    """ETA as broadcast (AIS carries no year)."""
    ship_type: int | None
    updated: int
    """Time of the latest static data merged in, Unix seconds."""

    def to_json(self) -> dict[str, Any]:
        return {"mmsi": self.mmsi, "imo": self.imo, "name": self.name, "callsign": self.callsign,
                "destination": self.destination, "eta": self.eta, "shipType": self.ship_type,
                "updated": iso_time(self.updated)}


@dataclass(frozen=True)
class BatchRecord:
    """An anchor batch as recorded."""

    batch_id: int
    org_id: int
    kind: int
    root: bytes
    count: int
    start: int
    end: int
    idempotency_key: str
    status: str
    tx_hash: str | None
    block: int | None
    anchor_id: int | None
    log_index: int | None
    """Block-wide index of the ``Anchored`` log (``portledger_getProof``'s)."""
    error: str | None


@dataclass(frozen=True)
class Unanchored:
    """A reading waiting for a batch: what batching needs."""

    id: int
    org_id: int
    kind: int
    time: int
    reading_hash: bytes
    """keccak-256 of its canonical bytes (the Merkle leaf's input)."""


def mmsi_of(values: dict[str, Any]) -> int | None:
    value = values.get("mmsi")
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1_000_000_000:
        return value
    return None


def imo_number(value: Any, *, checked: bool = False) -> str | None:
    """An IMO number as 7 digits; None if absent or not a number (or, ``checked``, if its check
    digit fails: such a number is kept on its reading, flagged, but never joined to positions)."""
    if isinstance(value, bool):
        return None
    text = str(value).strip() if isinstance(value, int | str) else ""
    if text.upper().startswith("IMO"):
        text = text[3:].strip()
    if not text.isdigit() or not 0 < int(text) < 10_000_000:
        return None
    number = f"{int(text):07d}"
    if checked and imo_check_digit(number[:6]) != int(number[6]):
        return None
    return number
