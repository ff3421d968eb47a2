"""A declaration's filing and status history on chain through ``Declarations.vy`` (pure: the
write-path operations, never the I/O).

Once the authority gives the official number, the **declarant** files the declaration under its
**chain key** with the authority's code and the keccak-256 of the submitted document
(:func:`file_operation`); every status the authority reports afterwards is posted by the
**customs organisation bound to that authority** (:func:`status_operations`), only once the
filing is final (the contract refuses a status of an unknown declaration). The contract takes
filings from agents, forwarders, carriers and airlines only (:data:`DECLARANT_ROLES`): a
declarant without such a role (a shipper) keeps its declaration off this contract — its
results still reach tracking as customs events. The customs organisation binds itself to its
authority once (``bindAuthority``, :func:`bind_operation`: ``POST
/v1/declarations/authorities/{authority}/bind``), an operator's step.

The chain key
-------------
``Declarations.vy`` is public state, and official numbers are guessable (China's are
sequential), so a declaration is never filed under a plain hash of its number
(``contracts.cargo.subject_key``): whoever typed or enumerated numbers would read the declarant,
the authority and the status history. Its key is a keyed hash (:func:`chain_key`)::

    key = HMAC-SHA256(salt, b"portledger/declarations/chain-key/v1" || authority code (1 byte)
                      || UTF-8 official number)

where ``salt`` is 32 random bytes made when the declaration (the stored shipment) is created,
sealed with it in ``declarations.db`` and shown to its readers only (the declarant, its named
readers, the authority). Without the salt nobody can link a key on chain to a number, nor find
the key of a number; with it a reader can recompute the key and check the chain itself.
Tracking finds a filing only through the hook the declarations feature registers
(:data:`gateway.appkeys.DECLARATION_KEYS`), which answers a key to readers alone.

The customs events' alias
------------------------
A result also becomes customs events (:mod:`gateway.feeds.customs`): one about the declaration
and one on each B/L and container naming it. Every cargo event's subject key is in clear on
chain, so the declaration is never their subject, nor a related reference, under its number:
they name its **alias** (:func:`alias`), a ``declaration`` reference keyed with the same salt::

    alias = "PLD" || base32(HMAC-SHA256(salt, b"portledger/declarations/alias/v1"
                                        || authority code (1 byte) || UTF-8 number)[:20])

35 letters and digits (RFC 4648 base32 without padding: ``A-Z2-7``), within the ``an..35`` of a
declaration reference, so it is an ordinary reference to the event model and tracking. The
number itself is only inside the events' sealed details (``declarationNumber``). Tracking by
the number finds the events under the alias through the same hook as the chain key, for the
declaration's readers only.

Idempotency keys: ``declarations:bind:<authority code>``, ``declarations:file:<submission>``
and ``declarations:post:<submission>:<status>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence

from eth_utils.crypto import keccak

from contracts import abi
from gateway.writepath.operations import Operation

#: ``Declarations.vy`` authority codes.
AUTHORITY_CODES = {"hk-tdec": 1, "hk-rocars": 1, "cn-itsw": 2}
#: ``Declarations.vy`` status codes of the authority's statuses (``received`` is not one).
STATUS_CODES = {"accepted": 2, "queried": 3, "released": 6, "rejected": 7}
#: Roles the contract takes filings from (``DECLARANTS`` in ``Declarations.vy``).
DECLARANT_ROLES = ("agent", "forwarder", "carrier", "airline")


def _keyed(salt: bytes, domain: bytes, authority: str, number: str) -> bytes:
    """HMAC-SHA256 under ``salt`` of ``domain``, the authority's code and the number."""
    if len(salt) != 32:
        raise ValueError("a declaration's chain salt is 32 bytes")
    message = domain + bytes([AUTHORITY_CODES[authority]]) + number.encode()
    return hmac.new(salt, message, hashlib.sha256).digest()


#: Domain of :func:`chain_key`'s HMAC.
CHAIN_KEY_DOMAIN = b"portledger/declarations/chain-key/v1"


def chain_key(salt: bytes, authority: str, number: str) -> bytes:
    """The declaration's key in ``Declarations.vy`` (module doc): HMAC-SHA256 under the
    declaration's secret ``salt`` of the domain, the authority's code and the number."""
    return _keyed(salt, CHAIN_KEY_DOMAIN, authority, number)


#: Domain of :func:`alias`'s HMAC.
ALIAS_DOMAIN = b"portledger/declarations/alias/v1"
#: What every :func:`alias` starts with (PortLedger Declaration).
ALIAS_PREFIX = "PLD"
#: Bytes of the HMAC an alias keeps (160 bits: 32 base32 characters).
ALIAS_BYTES = 20


def alias(salt: bytes, authority: str, number: str) -> str:
    """The ``declaration`` reference the customs events of the declaration name instead of its
    number (module doc): ``PLD`` and the base32 of the first 20 bytes of an HMAC-SHA256 under
    the declaration's secret ``salt`` of the alias domain, the authority's code and the
    number; 35 characters."""
    digest = _keyed(salt, ALIAS_DOMAIN, authority, number)[:ALIAS_BYTES]
    return ALIAS_PREFIX + base64.b32encode(digest).decode("ascii")


def document_digest(document: dict[str, object]) -> bytes:
    """keccak-256 of a document's canonical JSON (the hash filed on chain)."""
    return keccak(json.dumps(document, sort_keys=True, separators=(",", ":"),
                             ensure_ascii=False).encode())


def bind_key(authority: str) -> str:
    """The idempotency key of binding ``authority``'s code (TDEC and ROCARS share code 1)."""
    return f"declarations:bind:{AUTHORITY_CODES[authority]}"


def bind_operation(authority: str) -> Operation:
    """The customs organisation's ``Declarations.bindAuthority(code of authority)``."""
    code = AUTHORITY_CODES[authority]
    return Operation(
        idempotency_key=bind_key(authority), kind="call", to=abi.address("Declarations"),
        data=abi.call_data("Declarations", "bindAuthority", code),
        summary=f"bind authority {code} ({authority})")


def file_key(submission: str) -> str:
    return f"declarations:file:{submission}"


def file_operation(submission: str, authority: str, number: str, key: bytes,
                   document: dict[str, object]) -> Operation:
    """The declarant's ``Declarations.file(key, authority, document hash)`` (``key``: the
    number's :func:`chain_key`)."""
    return Operation(
        idempotency_key=file_key(submission), kind="call", to=abi.address("Declarations"),
        data=abi.call_data("Declarations", "file", key, AUTHORITY_CODES[authority],
                           document_digest(document)),
        summary=f"file declaration {number} ({authority})")


def status_operations(submission: str, number: str, key: bytes, statuses: Sequence[str],
                      reasons: Sequence[str] = ()) -> list[Operation]:
    """The authority's ``postStatus`` calls of ``statuses`` in order (each at most once); the
    last one's note hash is the keccak-256 of ``reasons``' JSON when there are any."""
    ordered = list(dict.fromkeys(s for s in statuses if s in STATUS_CODES))
    out: list[Operation] = []
    for status in ordered:
        note = (keccak(json.dumps(list(reasons), ensure_ascii=False).encode())
                if reasons and status == ordered[-1] else b"\x00" * 32)
        out.append(Operation(
            idempotency_key=f"declarations:post:{submission}:{status}", kind="call",
            to=abi.address("Declarations"),
            data=abi.call_data("Declarations", "postStatus", key, STATUS_CODES[status],
                               note),
            summary=f"declaration {number}: {status}"))
    return out
