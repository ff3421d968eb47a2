"""What a verified bundle proved, and its description in English for the bank's reader.

:class:`Verified` (with one :class:`ProvenEvent` per event) is what
:func:`proofs.verify.verify_bundle` returns; ``describe()`` gives the summary the
``portledger verify-proof`` command prints ("MSCU1234565 gated out (actual) at HKHKG …, sealed
by 3 of 4 validators"). The cargo event families are the verifier's own copy of
``contracts/cargo.py``'s table (a test keeps the two equal), so the verifier needs no contract
code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proofs.bundle import Log
from proofs.checks import CargoFacts

#: Cargo event families and codes (``contracts/cargo.py`` is the authority; a test keeps these
#: equal). Type = family << 8 | (position + 1).
EVENT_FAMILIES: dict[int, tuple[str, tuple[str, ...]]] = {
    1: ("SHIPMENT", ("RECE", "DRFT", "PENA", "PENU", "PENC", "CONF", "REJE", "APPR", "ISSU",
                     "SURR", "SUBM", "VOID", "REQS", "CMPL", "HOLD", "RELS", "CANC")),
    2: ("TRANSPORT", ("ARRI", "DEPA")),
    3: ("TERMINAL", ("LOAD", "DISC", "GTIN", "GTOT", "AVPU")),
    4: ("EQUIPMENT", ("STUF", "STRP", "PICK", "DROP", "INSP", "RSEA", "RMVD")),
    5: ("REEFER", ("MEAS", "ADJU")),
    6: ("LAND", ("PICK_UP", "HAND_OVER", "DELIVERY", "POSITION_ANCHOR")),
    7: ("WAREHOUSE", ("RECEIPT", "RELEASE")),
    8: ("AIR", ("BKD", "RCS", "FOH", "PRE", "MAN", "DEP", "TFD", "RCT", "ARR", "RCF", "NFD",
                "AWR", "AWD", "CCD", "DLV", "DDL", "DIS")),
    9: ("CUSTOMS", ("CUSR", "CUSH", "CUSI", "CUSX")),
}
#: Words for the summary line, for the events a bank most often lends against.
EVENT_WORDS = {
    "TERMINAL.LOAD": "loaded", "TERMINAL.DISC": "discharged", "TERMINAL.GTIN": "gated in",
    "TERMINAL.GTOT": "gated out", "TERMINAL.AVPU": "available for pick-up",
    "TRANSPORT.ARRI": "arrived", "TRANSPORT.DEPA": "departed",
    "CUSTOMS.CUSR": "released by customs", "CUSTOMS.CUSH": "held by customs",
}
CLASSIFIERS = {1: "planned", 2: "estimated", 3: "actual"}


def utc(seconds: int) -> str:
    """``YYYY-MM-DD HH:MM:SSZ`` of Unix ``seconds`` (proleptic Gregorian; no clock, no tz data)."""
    days, rest = divmod(seconds, 86_400)
    # H. Hinnant's civil_from_days.
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    return f"{year:04d}-{month:02d}-{day:02d} {rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}Z"


def event_type_name(event_type: int) -> str:
    """``"FAMILY.CODE"`` of a cargo event type, or ``"0x…"`` if unknown."""
    family = EVENT_FAMILIES.get(event_type >> 8)
    code = event_type & 0xFF
    if family is None or not 1 <= code <= len(family[1]):
        return f"0x{event_type:04x}"
    return f"{family[0]}.{family[1][code - 1]}"


@dataclass(frozen=True)
class ProvenEvent:
    """One event the bundle proved."""

    #: ``"cargo"``, ``"anchor"`` or ``"log"``.
    kind: str
    block_number: int
    block_hash: bytes
    block_time: int
    transaction_index: int
    log_index: int
    #: Account that signed the transaction.
    sender: bytes
    log: Log
    #: Validators whose commit seals prove the block, in seal order.
    sealed_by: tuple[bytes, ...]
    #: The validator set in force at the block.
    validators: tuple[bytes, ...]
    cargo: CargoFacts | None = None
    reference: str | None = None
    plaintext: bytes | None = None
    #: Reading hash proven under the anchored root.
    reading_hash: bytes | None = None

    def describe(self) -> str:
        """One human line."""
        sealers = ", ".join("0x" + a.hex() for a in self.sealed_by)
        tail = (
            f"in block #{self.block_number} (0x{self.block_hash.hex()[:16]}…), sealed by "
            f"{len(self.sealed_by)} of {len(self.validators)} validators: {sealers}"
        )
        if self.cargo is not None:
            c = self.cargo
            name = event_type_name(c.event_type)
            what = EVENT_WORDS.get(name, name)
            subject = self.reference or "subject 0x" + c.subject.hex()[:16] + "…"
            when = utc(c.event_time)
            extra = f"; retracts event {c.retracts}" if c.retracts else ""
            disclosed = "" if self.plaintext is None else f"; payload disclosed ({len(self.plaintext)} bytes, verified)"
            return (
                f"{subject} {what} ({CLASSIFIERS.get(c.classifier, '?')}) at "
                f"{c.location or '-'} {when}, event {c.event_id} by organisation {c.publisher}"
                f"{extra}{disclosed}, {tail}"
            )
        if self.kind == "anchor":
            anchor = int.from_bytes(self.log.topics[1], "big")
            count = int.from_bytes(self.log.data[32:64], "big")
            what = f"anchor {anchor} (root 0x{self.log.data[:32].hex()[:16]}…, {count} readings)"
            if self.reading_hash is not None:
                what = f"reading 0x{self.reading_hash.hex()[:16]}… is in {what}"
            return f"{what}, {tail}"
        return f"log {self.log_index} of transaction {self.transaction_index}, {tail}"


@dataclass(frozen=True)
class Verified:
    """What a bundle proved."""

    chain_id: int
    events: tuple[ProvenEvent, ...]
    #: (block number, new validator list) of each validator-set change followed.
    changes: tuple[tuple[int, tuple[bytes, ...]], ...] = field(default=())

    def describe(self) -> str:
        lines = [f"OK: {len(self.events)} event(s) proven on chain {self.chain_id} "
                 f"({len(self.changes)} validator-set change(s) followed from genesis)"]
        lines += ["  " + event.describe() for event in self.events]
        return "\n".join(lines)
